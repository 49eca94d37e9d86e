"""A short, readable end-of-run summary."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from forecast.runs.train import TrainResult


def print_summary(result: TrainResult, console: Console | None = None) -> None:
    """Print skill against persistence per lead time and where the run and model are."""
    console = console or Console()
    table = Table(title="Held-out skill against persistence (1 - MSE_model / MSE_persistence)")
    for col in ("lead", "MSE model", "MSE persistence", "skill"):
        table.add_column(col, justify="right")
    m = result.metrics
    for k in range(1, result.horizon + 1):
        table.add_row(
            str(k),
            f"{m[f'test/mse_lead{k}']:.4f}",
            f"{m[f'test/persistence_mse_lead{k}']:.4f}",
            f"{m[f'test/skill_lead{k}']:+.3f}",
        )
    console.print(table)
    console.print(f"overall skill: {m['test/skill']:+.3f}   validation score: {result.score:.4f}")
    if result.run_id:
        console.print(f"MLflow run id: {result.run_id}")
        console.print(f"model: {result.model_uri}")
        if result.model_version:
            console.print(f"registered: models:/{result.model_name}/{result.model_version}")
        if result.promotion:
            console.print(f"champion: {result.promotion}")
        console.print(f"open the UI:   mlflow ui --backend-store-uri {result.tracking_uri}")
    if result.checkpoint:
        console.print(f"best checkpoint: {result.checkpoint}")
