"""User-facing errors: raised for bad input or bad configuration, printed as one clear line."""


class ForecastError(Exception):
    """Base class for errors whose message is meant for the user, not a stack trace."""


class DataNotFoundError(ForecastError, FileNotFoundError):
    """A configured data path does not exist."""


class DataError(ForecastError, ValueError):
    """The data exist but do not fit what the configuration expects."""


class ConfigError(ForecastError, ValueError):
    """A configuration value is out of range or does not fit this machine (names the key)."""


class ArtifactError(ForecastError):
    """A stored file (weights, checkpoint, model bundle) is missing, corrupt or unsafe to load."""


class StorageError(ForecastError, OSError):
    """A write failed (full disk, read-only or missing directory); nothing half-written is kept."""
