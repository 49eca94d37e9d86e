"""forecast.serving."""
