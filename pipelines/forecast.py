"""Batch forecast job: the champion forecasts the latest data. `python -m pipelines.forecast`."""

from omegaconf import DictConfig

from forecast.runs.forecast import forecast
from pipelines._cli import hydra_app


@hydra_app("forecast")
def main(cfg: DictConfig) -> None:
    """Write one forecast file and print its path."""
    path = forecast(cfg)
    print(f"forecast written: {path}")


if __name__ == "__main__":
    main()
