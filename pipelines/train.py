"""Main job: train, evaluate against persistence, track in MLflow.  `python -m pipelines.train`."""

from omegaconf import DictConfig

from forecast.runs.preflight import check_tracking
from pipelines._cli import hydra_app


@hydra_app("train")
def main(cfg: DictConfig) -> float:
    """Run one training job; the returned score feeds Hydra sweepers."""
    check_tracking(cfg)  # before torch, Lightning and MLflow are imported: seconds, not ~20
    from forecast.runs.summary import print_summary
    from forecast.runs.train import train

    result = train(cfg)
    if result.rank_zero:  # the other processes of a DDP run stay quiet
        print_summary(result)
    return result.score


if __name__ == "__main__":
    main()
