"""Promotion job: backtest a version against the champion. `python -m pipelines.promote`."""

import sys

import hydra
from omegaconf import DictConfig

from forecast.errors import ForecastError
from forecast.runs.promote import promote


@hydra.main(version_base="1.3", config_path="../conf", config_name="promote")
def main(cfg: DictConfig) -> None:
    """Print the decision; exit 2 with one line on a user error."""
    try:
        d = promote(cfg)
    except ForecastError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    state = "promoted" if d.promoted else "kept"
    print(f"{cfg.model_name} v{d.candidate_version}: {state} ({d.reason})")


if __name__ == "__main__":
    main()
