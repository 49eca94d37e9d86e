"""The MLflow pyfunc: network + fitted normaliser + metadata, loaded without unpickling."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from torch import nn

from forecast.data.normalize import Normalizer


def build_net(target: str, kwargs: dict[str, Any]) -> nn.Module:
    """Rebuild a network from its import path and constructor arguments."""
    module_name, _, cls_name = target.rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**kwargs)


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
    names = ("weights.pt", "net.json", "normalizer.json", "metadata.json")
    return {n.split(".")[0]: str(d / n) for n in names}


class ForecastModel(mlflow.pyfunc.PythonModel):
    """Forecasts from raw (unnormalised) context windows.

    Input: float array ``(B, context, C, ...)`` in physical units; output ``(B, horizon, C, ...)``.
    """

    def load_context(self, context: Any) -> None:
        """Load weights with ``weights_only=True`` and rebuild the net from its JSON config."""
        art = context.artifacts
        spec = json.loads(Path(art["net"]).read_text())
        self.net = build_net(spec["target"], spec["kwargs"])
        state = torch.load(art["weights"], map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval()
        self.normalizer = Normalizer.load(art["normalizer"])
        self.metadata = json.loads(Path(art["metadata"]).read_text())

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """Normalise, run the net, map back to physical units.

        Untyped on purpose: MLflow reads type hints as a schema, and the signature is explicit.
        """
        x = np.asarray(model_input, dtype=np.float32)
        z = self.normalizer.transform(x, axis=2).astype(np.float32)
        with torch.no_grad():
            y = self.net(torch.from_numpy(z)).numpy()
        return self.normalizer.inverse(y, axis=2).astype(np.float32)
