"""A short, readable end-of-run summary."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from forecast.runs.train import TrainResult

# the headline error, most specific first: latitude-weighted physical units, then plain ones
HEADLINES = ("rmse_lat_phys", "rmse_phys", "rmse_lat", "rmse")


def chosen_leads(horizon: int) -> list[int]:
    """Every lead up to 24 steps; beyond, powers of two and the last (720 rows help no one)."""
    if horizon <= 24:
        return list(range(1, horizon + 1))
    return sorted({*(2**i for i in range(horizon.bit_length()) if 2**i <= horizon), horizon})


def print_references(result: TrainResult, console: Console) -> None:
    """The headline error per lead (in hours when known): model, persistence, other references.

    Printed when the run has more than plain normalised errors against persistence: physical
    units, latitude weights, or the preset's ``references`` (climatology, seasonal naive).
    """
    m = result.metrics
    metric = next((h for h in HEADLINES if f"test/{h}_lead1" in m), None)
    if metric is None:
        return
    suffix = f"_{metric}_lead1"
    refs = sorted(
        k[len("test/") : -len(suffix)]
        for k in m
        if k.endswith(suffix) and k != f"test/{metric}_lead1"
    )
    if metric == "rmse" and refs == ["persistence"]:
        return  # the skill table above says it all
    hours = result.step_hours
    table = Table(
        title=f"Held-out {metric} per lead (physical units when _phys), model and references"
    )
    table.add_column("lead h" if hours else "lead", justify="right")
    for col in ("model", *refs, "model / best reference"):
        table.add_column(col, justify="right")
    for k in chosen_leads(result.horizon):
        model = m[f"test/{metric}_lead{k}"]
        values = [m[f"test/{r}_{metric}_lead{k}"] for r in refs]
        best = min(values, default=float("nan"))
        lead = f"{hours * k:g}" if hours else str(k)
        table.add_row(lead, f"{model:.4f}", *(f"{v:.4f}" for v in values), f"{model / best:.3f}")
    console.print(table)


def print_summary(result: TrainResult, console: Console | None = None) -> None:
    """Print skill against persistence per lead time and where the run and model are."""
    console = console or Console()
    table = Table(title="Held-out skill against persistence (1 - MSE_model / MSE_persistence)")
    for col in ("lead", "MSE model", "MSE persistence", "skill"):
        table.add_column(col, justify="right")
    m = result.metrics
    for k in chosen_leads(result.horizon):
        table.add_row(
            str(k),
            f"{m[f'test/mse_lead{k}']:.4f}",
            f"{m[f'test/persistence_mse_lead{k}']:.4f}",
            f"{m[f'test/skill_lead{k}']:+.3f}",
        )
    console.print(table)
    console.print(f"overall skill: {m['test/skill']:+.3f}   validation score: {result.score:.4f}")
    if "test/mse" in m and "test/mae" in m:  # the headline series figures papers report
        console.print(f"test MSE {m['test/mse']:.4f}   test MAE {m['test/mae']:.4f} (normalised)")
    print_references(result, console)
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
