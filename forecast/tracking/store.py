"""The embedded tracking store: created and migrated once under a file lock, safe to share.

MLflow creates and migrates a fresh sqlite store in whichever process touches it first; two jobs
starting together both migrate and the loser leaves the store unusable (``duplicate column name``).
:func:`ensure_store` does the creation once, under a ``filelock.FileLock`` beside the database,
before any logger opens it; later openers find the schema current and migrate nothing.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from sqlalchemy import event
from sqlalchemy.engine import Engine

from forecast.errors import ForecastError

SQLITE = "sqlite:///"
BUSY_TIMEOUT_MS = 60_000
PID_TAG, HOST_TAG = "forecast.pid", "forecast.host"


class StoreLockedError(ForecastError):
    """The tracking store's creation lock was not obtained in time."""


@event.listens_for(Engine, "connect")
def _busy_timeout(dbapi_conn: Any, _record: Any) -> None:
    # writers from several jobs queue on sqlite's lock instead of failing with "database is locked"
    if isinstance(dbapi_conn, sqlite3.Connection):
        dbapi_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    if not tracking_uri.startswith(SQLITE):
        return None
    return Path(tracking_uri[len(SQLITE) :].split("?", 1)[0])


def ensure_store(
    tracking_uri: str, artifact_location: str | None = None, wait_s: float = 600
) -> str:
    """Create and migrate a local sqlite store once, then mark its stale runs FAILED.

    Other stores (a tracking server, a database server) are left to their owner.

    Args:
        tracking_uri: the store; relative sqlite paths should already be absolute.
        artifact_location: default artifact root recorded with the store (a path or URI).
        wait_s: seconds to wait for another process creating the same store.

    Returns:
        ``tracking_uri``, unchanged.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        return tracking_uri
    from mlflow.store.model_registry.sqlalchemy_store import (
        SqlAlchemyStore as RegistryStore,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path.parent.mkdir(parents=True, exist_ok=True)
    root = artifact_location or (path.parent / "mlartifacts").as_uri()
    try:
        with FileLock(f"{path}.lock", timeout=wait_s):
            fresh = not path.exists() or path.stat().st_size == 0
            # creates the tables and runs every migration
            SqlAlchemyStore(tracking_uri, root)
            RegistryStore(tracking_uri)
            if fresh:  # WAL is a property of the file: readers stop blocking the writer
                with sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000) as conn:
                    conn.execute("PRAGMA journal_mode = WAL")
            fail_stale_runs(tracking_uri)
    except Timeout as e:
        raise StoreLockedError(
            f"tracking store {path} is locked by another process for over {wait_s:.0f} s "
            f"(lock file {path}.lock)"
        ) from e
    return tracking_uri


def owner_tags() -> dict[str, str]:
    """Tags naming the process that owns a run, so a later job can tell a dead one."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fail_stale_runs(tracking_uri: str) -> list[str]:
    """Mark FAILED every RUNNING run whose owning process on this host is gone.

    Runs without owner tags, or owned by another host, are left alone: their liveness is unknown.

    Returns:
        The ids of the runs marked FAILED.
    """
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    host = socket.gethostname()
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not ids:
        return []
    failed = []
    for run in client.search_runs(ids, "attributes.status = 'RUNNING'", ViewType.ALL):
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if tags.get(HOST_TAG) != host or not pid.isdigit() or _alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, "forecast.failed_reason", f"process {pid} died")
        client.set_terminated(run.info.run_id, status="FAILED")
        failed.append(run.info.run_id)
    return failed


def default_tracking_uri() -> str:
    """The store every job and the server use, resolved as ``conf/logger/mlflow.yaml`` does.

    ``$MLFLOW_TRACKING_URI``, else the embedded ``mlflow.db`` in ``$FORECAST_ROOT``, else in the
    working directory.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = Path(os.environ.get("FORECAST_ROOT") or ".").resolve()
    return f"{SQLITE}{root / 'mlflow.db'}"
