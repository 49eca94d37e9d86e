"""Main job: train, evaluate against persistence, track in MLflow.  `python -m pipelines.train`."""

import sys

import hydra
from omegaconf import DictConfig

from forecast.errors import ForecastError
from forecast.runs.summary import print_summary
from forecast.runs.train import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Run one training job; the returned score feeds Hydra sweepers."""
    try:
        result = train(cfg)
    except ForecastError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if result.rank_zero:  # the other processes of a DDP run stay quiet
        print_summary(result)
    return result.score


if __name__ == "__main__":
    main()
