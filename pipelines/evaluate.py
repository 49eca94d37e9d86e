"""Evaluation job: score the champion (and a version) on held-out data. `pipelines.evaluate`."""

from omegaconf import DictConfig

from forecast.runs.evaluate import evaluate
from pipelines._cli import hydra_app


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    """Print one line per evaluated version; exit 2 with one line on a user error."""
    for e in evaluate(cfg):
        print(e.line(), flush=True)


if __name__ == "__main__":
    main()
