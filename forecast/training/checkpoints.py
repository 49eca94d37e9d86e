"""Checkpoints with a checksum: written atomically with a sha256 sidecar, verified when read.

:class:`ChecksumCheckpointIO` is Lightning's ``CheckpointIO`` plugin for every trainer of a run:
each checkpoint is serialised once, written to a hidden temporary file, fsynced and renamed into
place, then its digest goes to ``<name>.sha256`` (also atomically). Loading verifies the digest
and reads with ``torch.load(weights_only=True)``, so a truncated or corrupt file, or one that
unpickles code, is refused as an :class:`~forecast.errors.ArtifactError`.

The old sidecar is removed before the new checkpoint is renamed in, so a kill between the two
renames leaves a checkpoint without a sidecar, never one with a stale digest. A checkpoint
without a sidecar (written before this plugin, or fetched from the tracking store) is accepted
when it loads completely. :func:`resume_checkpoint` picks what a resumed fit starts from: the
requested file if good, else the newest good checkpoint beside it, each skip said in one line.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from forecast.errors import ArtifactError

log = logging.getLogger(__name__)

SUFFIX = ".sha256"
# ckpt_path values Lightning resolves to a file itself
LIGHTNING_NAMES = frozenset({"last", "best", "hpc", "registry"})


def sidecar(path: str | Path) -> Path:
    """The checksum file of checkpoint ``path``."""
    p = Path(path)
    return p.with_name(p.name + SUFFIX)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temporary beside ``path``, fsync, rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _remove_stale(path: Path) -> None:
    """Delete temporaries of ``path`` whose writer was killed (its PID is gone)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                tmp.unlink(missing_ok=True)
            except PermissionError:
                pass


def _read(path: Path) -> tuple[bytes, str | None]:
    """The file's bytes, and the problem with them (None when they are intact)."""
    data = path.read_bytes()
    side = sidecar(path)
    if side.is_file():
        want = (side.read_text().split() or [""])[0]
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            return data, f"sha256 {got[:12]} does not match {side.name} ({want[:12]}): corrupt"
        return data, None
    try:  # no checksum: accepted only when the whole file loads as plain tensors
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        return data, f"no checksum and it does not load ({_first(e)}): truncated or corrupt"
    except pickle.UnpicklingError as e:
        return data, f"refused: not plain tensors ({_first(e)})"
    return data, None


def _first(e: BaseException) -> str:
    return " ".join(str(e).strip().split("\n", 1)[0].split())[:160] or type(e).__name__


def checkpoint_problem(path: str | Path) -> str | None:
    """Why checkpoint ``path`` cannot be used (missing, corrupt, unsafe), or None when it can."""
    p = Path(path)
    if not p.is_file():
        return "missing"
    return _read(p)[1]


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A verified checkpoint, read with ``weights_only=True``.

    Raises:
        ArtifactError: the file is missing, fails its checksum, or is not plain tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"checkpoint {p} does not exist")
    data, problem = _read(p)
    if problem:
        raise ArtifactError(f"checkpoint {p}: {problem}")
    try:
        out = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ArtifactError(f"checkpoint {p}: refused: not plain tensors ({_first(e)})") from e
    if not isinstance(out, dict):
        raise ArtifactError(f"checkpoint {p} holds a {type(out).__name__}, not a checkpoint dict")
    return out


def resume_checkpoint(path: str | Path | None) -> str | None:
    """What a fit asked to resume from ``path`` should start from.

    ``path`` itself when it verifies; otherwise the newest good checksummed ``*.ckpt`` in its
    folder (a corrupt ``last.ckpt`` falls back to the ``best.ckpt`` of an earlier epoch); None
    (train from scratch) when there is none. Each skipped file is logged in one line.
    """
    if path is None:
        return None
    if str(path) in LIGHTNING_NAMES or "://" in str(path):
        return str(path)  # Lightning resolves these itself (and loads through this IO)
    p = Path(path)
    problem = checkpoint_problem(p)
    if problem is None:
        return str(p)
    # only checkpoints this IO wrote (with a checksum) stand in: not a fetched init.ckpt
    others = [c for c in p.parent.glob("*.ckpt") if c != p and sidecar(c).is_file()]
    for other in sorted(others, key=lambda c: c.stat().st_mtime, reverse=True):
        why = checkpoint_problem(other)
        if why is None:
            log.warning("checkpoint %s skipped (%s); resuming from %s", p, problem, other)
            return str(other)
        log.warning("checkpoint %s skipped too (%s)", other, why)
    log.warning("checkpoint %s skipped (%s); no good checkpoint beside it: training from scratch",
                p, problem)  # fmt: skip
    return None


class ChecksumCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with an atomic write, a sha256 sidecar and verified reads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Serialise once; write the file atomically, then its checksum."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        side = sidecar(target)
        _remove_stale(target)
        _remove_stale(side)
        side.unlink(missing_ok=True)  # never a new file beside an old digest
        _write_atomic(target, data)
        _write_atomic(side, f"{hashlib.sha256(data).hexdigest()}  {target.name}\n".encode())

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable[..., Any] | Any = "cpu",
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """A verified checkpoint (always ``weights_only=True``)."""
        return load_checkpoint_file(path, map_location)

    def remove_checkpoint(self, path: Any) -> None:
        """Remove the checkpoint and its checksum."""
        super().remove_checkpoint(path)
        sidecar(path).unlink(missing_ok=True)
