"""forecast.evaluation."""
