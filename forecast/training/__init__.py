"""forecast.training."""
