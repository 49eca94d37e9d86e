"""Batch forecast job: the champion forecasts the latest data. `python -m pipelines.forecast`."""

import sys

import hydra
from omegaconf import DictConfig

from forecast.errors import ForecastError
from forecast.runs.forecast import forecast


@hydra.main(version_base="1.3", config_path="../conf", config_name="forecast")
def main(cfg: DictConfig) -> None:
    """Write one forecast file and print its path."""
    try:
        path = forecast(cfg)
    except ForecastError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"forecast written: {path}")


if __name__ == "__main__":
    main()
