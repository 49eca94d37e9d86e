"""forecast.tracking."""
