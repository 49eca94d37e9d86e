"""The synthetic store is generated once when several processes start on a fresh root at once."""

from __future__ import annotations

import threading
import time

import numpy as np
from filelock import FileLock

from forecast.data import synthetic
from forecast.data.sources import open_store

PARAMS = {"n_times": 20, "n_lat": 4, "n_lon": 5, "n_blobs": 2, "seed": 3}


def test_starters_wait_for_the_generation_lock_and_generate_once(tmp_path, monkeypatch):
    path = tmp_path / "synthetic" / "grid.zarr"
    path.parent.mkdir()
    calls = []
    real = synthetic.make_grid
    monkeypatch.setattr(synthetic, "make_grid", lambda **kw: calls.append(kw) or real(**kw))
    errors: list[BaseException] = []

    def start() -> None:
        try:
            synthetic.ensure_grid_store(path, **PARAMS)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    # another process is generating: the starters must wait, not write a second store beside it
    held = FileLock(str(path.with_name(f".{path.name}.lock")))
    held.acquire()
    starters = [threading.Thread(target=start) for _ in range(3)]
    for t in starters:
        t.start()
    time.sleep(0.5)
    assert all(t.is_alive() for t in starters) and not path.exists()
    held.release()
    for t in starters:
        t.join(timeout=60)
    assert not errors, errors
    assert len(calls) == 1  # the first starter generated; the others found its store
    with open_store(path) as ds:
        np.testing.assert_array_equal(ds["field"].values, real(**PARAMS)["field"].values)
    assert sorted(p.name for p in path.parent.iterdir()) == [".grid.zarr.lock", "grid.zarr"]
