"""The MLflow pyfunc: network + fitted normaliser + metadata, loaded without unpickling.

Layout of a saved bundle (all plain files, no pickle):
``weights.pt`` (a state dict, read with ``torch.load(weights_only=True)``), ``net.json`` (import
path and constructor arguments), ``normalizer.json`` and ``metadata.json`` (see
:func:`model_metadata`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec
from torch import nn

from forecast.data.normalize import Normalizer
from forecast.data.spec import DataSpec
from forecast.errors import ArtifactError
from forecast.serving.runner import Runner, inference_runner
from forecast.serving.tiles import forecast_tiled
from forecast.serving.torch_thread import on_torch_thread
from forecast.serving.validate import check_input, check_variables

BUNDLE_FILES = ("weights.pt", "net.json", "normalizer.json", "metadata.json")


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from ``path``; an :class:`ArtifactError` naming the file otherwise.

    ``weights_only=True`` refuses any pickled object that is not tensors and containers (a
    crafted pickle runs no code); a truncated or corrupt file is refused too.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's long advice is for trusted files: not here
        raise ArtifactError(
            f"refused to load {path}: it pickles objects that are not plain tensors "
            "(torch.load weights_only refused them); re-export the weights as a state dict"
        ) from e
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        first = " ".join(str(e).strip().split("\n", 1)[0].split())[:200]
        raise ArtifactError(f"weights file {path} is corrupt or truncated ({first})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"weights file {path} is not a state dict of tensors")
    return state


def read_json(path: str | Path) -> Any:
    """A bundle's JSON file; an :class:`ArtifactError` naming the file if it does not parse."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"model file {path} is unreadable or not JSON: {e}") from None


def build_net(target: str, kwargs: dict[str, Any]) -> nn.Module:
    """Rebuild a network from its import path and constructor arguments.

    Arguments may themselves be ``{"_target_": ..., "_partial_": bool, ...}`` mappings (a composed
    net's backbone, head, ...): they are built first, as partials when marked so.
    """
    return _build({"_target_": target, **kwargs})


def _build(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_build(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    args = {k: _build(v) for k, v in obj.items() if k not in ("_target_", "_partial_")}
    if "_target_" not in obj:
        return args
    module_name, _, name = str(obj["_target_"]).rpartition(".")
    factory = getattr(importlib.import_module(module_name), name)
    return functools.partial(factory, **args) if obj.get("_partial_") else factory(**args)


def unservable(net: nn.Module, spec: DataSpec) -> str | None:
    """Why ``net`` cannot answer raw-window requests, or None when it can.

    A request carries only the context window ``x``; nets that also need calendar covariates, a
    paired grid or window positions are trained and tracked but not served.
    """
    params = inspect.signature(net.forward).parameters
    required = [
        n for n, p in list(params.items())[1:]
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]  # fmt: skip
    if required:
        return f"{type(net).__name__}.forward also needs {required}"
    if spec.calendar_features:
        return "the net reads calendar covariates"
    if spec.grid_channels:
        return "the net reads a paired grid"
    return None


def model_metadata(spec: DataSpec, max_samples: int = 64, **extra: Any) -> dict[str, Any]:
    """What the served model needs to know about its inputs, from the run's DataSpec.

    Gridded data: one sample is ``(context, C, H, W)``, variables on axis 2 of a batch. Sensor data:
    one sample is ``(context, S, F)``, variables (features) on axis 3. A net trained on spatial
    patches is described with the whole grid (``spec.full_grid``) and its ``patch``: requests and
    batch forecasts cover the whole grid.

    Args:
        spec: the data description the net was built from.
        max_samples: cap on samples per request.
        **extra: more JSON-able fields (data fingerprint, ...).

    Returns:
        A JSON-able dict.
    """
    c = len(spec.variables) or spec.in_channels
    grid = spec.full_grid or spec.grid
    sample: tuple[int, ...]
    out: tuple[int, ...]
    if grid is not None:
        sample = (spec.context, c, *grid)
        out, axis = (spec.horizon, spec.out_channels, *grid), 2
    elif spec.n_sensors is not None:
        sample = (spec.context, spec.n_sensors, c)
        out, axis = (spec.horizon, spec.n_sensors, spec.out_channels), 3
    else:
        raise ValueError("DataSpec has neither grid nor n_sensors: cannot describe the input")
    return {
        "context": spec.context,
        "horizon": spec.horizon,
        "variables": list(spec.variables) or [f"var{i}" for i in range(c)],
        "targets": list(spec.targets) or list(spec.variables) or [f"var{i}" for i in range(c)],
        "grid": list(grid) if grid else None,
        "patch": list(spec.grid) if spec.full_grid and spec.grid else None,
        "n_sensors": spec.n_sensors,
        "sample_shape": list(sample),
        "output_shape": list(out),
        "channel_axis": axis,
        "max_samples": max_samples,
        **extra,
    }


def signature(metadata: dict[str, Any]) -> ModelSignature:
    """Tensor signature with a free (-1) batch dim; optional ``variables`` and ``allow_missing``."""
    f32 = np.dtype(np.float32)
    return ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, *metadata["sample_shape"]))]),
        outputs=Schema([TensorSpec(f32, (-1, *metadata["output_shape"]))]),
        params=ParamSchema(
            [
                ParamSpec("variables", "string", list(metadata["variables"]), (-1,)),
                ParamSpec("allow_missing", "boolean", False),
            ]
        ),
    )


def save_bundle(
    directory: str | Path,
    net: nn.Module,
    net_target: str,
    net_kwargs: dict[str, Any],
    normalizer: Normalizer,
    metadata: dict[str, Any],
) -> dict[str, str]:
    """Write weights (a plain state dict), net config, normaliser and metadata into ``directory``.

    Returns:
        The artifact mapping for :func:`mlflow.pyfunc.log_model`.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, d / "weights.pt")
    (d / "net.json").write_text(json.dumps({"target": net_target, "kwargs": net_kwargs}, indent=2))
    normalizer.save(d / "normalizer.json")
    (d / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return {n.split(".")[0]: str(d / n) for n in BUNDLE_FILES}


class ForecastModel(PythonModel):
    """Forecasts from raw (unnormalised) context windows.

    Input: float array ``(B, *sample_shape)`` in physical units, ``B <= max_samples``; output
    ``(B, *output_shape)`` in physical units. NaN (missing) inputs are refused unless the request
    sets ``params={"allow_missing": true}``; then they are filled as in training. Bad input
    raises an invalid-parameter ``MlflowException`` (HTTP 400 with a message when served).
    """

    # `predict` is untyped on purpose: the signature is explicit and validation is ours, so skip
    # MLflow's type-hint wrapper (and its warning)
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        """Load weights with ``weights_only=True`` and rebuild the net from its JSON config."""
        self.load_files(context.artifacts)

    def load_files(self, artifacts: dict[str, str]) -> None:
        """Load a bundle from ``{name: path}`` (the same files MLflow hands to load_context).

        Runs on the torch thread (see :mod:`forecast.serving.torch_thread`): building the net
        and copying its weights already start an OpenMP team in whichever thread does it.
        """
        on_torch_thread(self._load, artifacts)

    def _load(self, artifacts: dict[str, str]) -> None:
        spec = read_json(artifacts["net"])
        self.net = build_net(spec["target"], spec["kwargs"])
        state = load_weights(artifacts["weights"])
        try:
            self.net.load_state_dict(state)
        except RuntimeError as e:  # other shapes or names: weights of another net
            raise ArtifactError(
                f"weights file {artifacts['weights']} does not fit {spec['target']}: "
                + " ".join(str(e).split())[:300]
            ) from None
        self.net.eval()
        self.metadata: dict[str, Any] = read_json(artifacts["metadata"])
        patch = self.metadata.get("patch")
        self.patch = (int(patch[0]), int(patch[1])) if patch else None
        self.tiled = self.patch is not None and not self._reads_whole_grid(spec["kwargs"])
        fitted = Normalizer.load(artifacts["normalizer"])
        # inputs and forecast targets may be different variables of one fitted normaliser
        self.in_norm = fitted.subset(self.metadata["variables"])
        self.out_norm = fitted.subset(self.metadata.get("targets", self.metadata["variables"]))
        self.runner = self._runner()

    def _runner(self) -> Runner:
        """The fused inference graph of the net (whole-grid and sensor nets), else eager."""
        if self.tiled:  # tiles reach the net in batches of changing size: stay eager
            return Runner(self.net, "eager", "served by tiles")
        gen = torch.Generator().manual_seed(0)
        probe = torch.randn(1, *(int(s) for s in self.metadata["sample_shape"]), generator=gen)
        return inference_runner(self.net, probe)

    def _reads_whole_grid(self, kwargs: dict[str, Any]) -> bool:
        """Whether a net trained on patches can read the whole grid in one pass.

        A net that took ``grid`` learned its input size from the patch (e.g. a dense layer over
        the flattened frame); a convolutional one may still refuse a grid its strides do not
        divide. Either way it is served by tiles (:mod:`forecast.serving.tiles`).
        """
        if "grid" in kwargs:
            return False
        c = int(self.metadata["sample_shape"][1])
        probe = torch.zeros(1, int(self.metadata["context"]), c, *self.metadata["grid"])
        try:
            with torch.inference_mode():
                self.net(probe)
        except (ValueError, RuntimeError):
            return False
        return True

    def forecast(self, x: np.ndarray) -> np.ndarray:
        """Validated raw ``(B, *sample_shape)`` -> raw ``(B, *output_shape)``, float32.

        NaN inputs become 0 in normalised space, as missing inputs are in training.
        """
        axis = int(self.metadata["channel_axis"])
        z = np.nan_to_num(self.in_norm.transform(x, axis=axis).astype(np.float32), nan=0.0)
        y = on_torch_thread(self._forward, z)
        return self.out_norm.inverse(y, axis=axis).astype(np.float32)

    def _forward(self, z: np.ndarray) -> np.ndarray:
        """Normalised ``(B, *sample_shape)`` -> normalised output (runs on the torch thread)."""
        with torch.inference_mode():
            if self.tiled and self.patch is not None:
                return forecast_tiled(self.net, torch.from_numpy(z), self.patch).numpy()
            return self.runner.fn(torch.from_numpy(z)).numpy()

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """Validate, normalise, run the net, map back to physical units.

        Untyped on purpose: MLflow reads type hints as a schema, and the signature is explicit.
        """
        m, params = self.metadata, params or {}
        check_variables(params.get("variables"), m["variables"])
        allow_missing = bool(params.get("allow_missing", False))
        x = check_input(
            model_input,
            m["sample_shape"],
            m["variables"],
            m["max_samples"],
            m["channel_axis"],
            allow_missing,
        )
        return self.forecast(x)
