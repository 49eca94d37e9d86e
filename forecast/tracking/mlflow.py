"""MLflow helpers: tracking URI, tags, config artifact, model logging."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forecast.errors import ForecastError


def absolute_tracking_uri(uri: str) -> str:
    """Make a relative ``sqlite:///`` path absolute so every process sees the same store."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def git_commit(cwd: str | Path = ".") -> str:
    """The current git commit of ``cwd``, or ``"unknown"`` outside a repository."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into ``a.b.c`` keys (lists become their string form)."""
    flat: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flat.update(flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail fast with a clear message when a tracking server does not answer.

    MLflow's own client retries an unreachable server for minutes; a job should say so at once.

    Args:
        tracking_uri: an ``http(s)://`` server, or a local store (``sqlite:///``, a path).
        timeout: seconds to wait for the server's health endpoint.
    """
    if tracking_uri.startswith(("http://", "https://")):
        url = tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (http only)
                if r.status == 200:
                    return
                reason = f"HTTP {r.status}"
        except (OSError, ValueError) as e:
            reason = str(e)
        raise TrackingUnreachableError(f"tracking server {tracking_uri} is unreachable: {reason}")
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not Path(tracking_uri[len(prefix) :]).exists():
        raise TrackingUnreachableError(
            f"tracking store {tracking_uri} does not exist (no run has been tracked there)"
        )


class TrackingUnreachableError(ForecastError):
    """The configured tracking store cannot be reached."""
