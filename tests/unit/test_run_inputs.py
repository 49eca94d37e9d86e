"""A run's input record: the dataset digest is the data fingerprint, the time step is named."""

from __future__ import annotations

import json
import shlex
from types import SimpleNamespace

from forecast.data.synthetic import make_grid
from forecast.tracking.run_inputs import log_data_input, log_invocation, time_step


class _Client:
    def __init__(self):
        self.tags, self.inputs = {}, []

    def set_tag(self, run_id, key, value):
        self.tags[key] = value

    def log_inputs(self, run_id, datasets):
        self.inputs.extend(datasets)


def _module(tmp_path, step=1):
    ds = make_grid(n_times=8, n_lat=3, n_lon=4, n_blobs=1)
    return SimpleNamespace(
        dataset=ds,
        variables=["field"],
        step=step,
        source=SimpleNamespace(path=str(tmp_path / "grid.zarr")),
        fingerprint=lambda: "0123456789abcdef",
        bounds=lambda: {"train": (0, 5), "val": (5, 6), "test": (6, 8)},
    )


def test_dataset_input_carries_the_fingerprint_source_and_splits(tmp_path):
    client = _Client()
    log_data_input(client, "r", _module(tmp_path), "synthetic")
    assert [i.tags[0].value for i in client.inputs] == ["train", "val", "test"]
    ds = client.inputs[0].dataset
    assert ds.name == "synthetic" and ds.digest == "0123456789abcdef"
    assert json.loads(ds.source)["uri"].endswith("grid.zarr") and ds.source_type == "local"
    assert json.loads(ds.profile)["splits"]["test"] == [6, 8]
    assert json.loads(ds.schema)["field"]["dims"] == ["time", "lat", "lon"]


def test_time_step_scales_with_the_module_step(tmp_path):
    assert time_step(_module(tmp_path)) == "0 days 06:00:00"
    assert time_step(_module(tmp_path, step=2)) == "0 days 12:00:00"
    assert time_step(SimpleNamespace(variables=["pixel"])) is None  # no time axis


def test_command_line_is_a_tag_outside_hydra():
    client, argv = _Client(), ["pipelines.train", "model.lr=0.1", "x='a b'"]
    log_invocation(client, "r", argv)
    assert list(client.tags) == ["command"] and shlex.split(client.tags["command"]) == argv
