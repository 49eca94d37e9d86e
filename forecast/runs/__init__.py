"""forecast.runs."""
