"""Promotion job: backtest a version against the champion. `python -m pipelines.promote`."""

from omegaconf import DictConfig

from forecast.runs.promote import promote
from forecast.runs.sweep import sweep_version
from pipelines._cli import hydra_app


@hydra_app("promote")
def main(cfg: DictConfig) -> None:
    """Print the decision; exit 2 with one line on a user error."""
    if cfg.get("sweep_id"):  # sweep jobs never register: the best one becomes the candidate
        cfg.version = sweep_version(str(cfg.tracking_uri), str(cfg.model_name), str(cfg.sweep_id))
    d = promote(cfg)
    state = "promoted" if d.promoted else "kept"
    print(f"{cfg.model_name} v{d.candidate_version}: {state} ({d.reason})")


if __name__ == "__main__":
    main()
