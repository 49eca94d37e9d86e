"""User-facing errors: raised for bad input or bad configuration, printed as one clear line."""


class ForecastError(Exception):
    """Base class for errors whose message is meant for the user, not a stack trace."""


class DataNotFoundError(ForecastError, FileNotFoundError):
    """A configured data path does not exist."""


class DataError(ForecastError, ValueError):
    """The data exist but do not fit what the configuration expects."""
