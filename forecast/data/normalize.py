"""Per-variable normalisation fitted on the training split only, saved with every run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from forecast.errors import DataError

# offsets and scales beyond this are float32 overflow, not data (float32 max is ~3.4e38)
F32_LIMIT = 1e30


@dataclass(frozen=True)
class Normalizer:
    """Per-variable affine scaling ``z = (x - offset) / scale``.

    Args:
        variables: variable names, in channel order.
        offset: one offset per variable (the mean for z-score, the minimum for min-max).
        scale: one scale per variable (the std for z-score, the range for min-max).
        kind: ``"zscore"`` or ``"minmax"``.
    """

    variables: tuple[str, ...]
    offset: tuple[float, ...]
    scale: tuple[float, ...]
    kind: str = "zscore"

    @classmethod
    def from_stats(
        cls,
        variables: list[str],
        kind: str,
        mean: np.ndarray,
        std: np.ndarray,
        vmin: np.ndarray,
        vmax: np.ndarray,
    ) -> Normalizer:
        """Build from per-variable training statistics (see ``FrameReader.scan``)."""
        if kind not in ("zscore", "minmax"):
            raise DataError(f"normalisation kind must be 'zscore' or 'minmax', got '{kind}'")
        offset, scale = (mean, std) if kind == "zscore" else (vmin, vmax - vmin)
        bad = [v for v, o in zip(variables, offset, strict=True) if not np.isfinite(o)]
        if bad:
            raise DataError(
                f"cannot fit normalisation: variables {bad} have no finite value in the training "
                "split; drop them from `variables` or change the splits"
            )
        # float32 sums of squares overflow for values beyond ~1e19: scaling would be meaningless
        huge = [
            v for v, o, s in zip(variables, offset, scale, strict=True)
            if not (np.isfinite(s) and abs(o) < F32_LIMIT and s < F32_LIMIT)
        ]  # fmt: skip
        if huge:
            raise DataError(
                f"cannot fit normalisation: the statistics of variables {huge} overflow float32 "
                "(values beyond ~1e19); rescale them (other units) before training"
            )
        constant = [v for v, s in zip(variables, scale, strict=True) if not s > 0]
        if constant:  # nothing to learn from, and z-scores would divide by zero
            raise DataError(
                f"cannot fit normalisation: variables {constant} are constant in the training "
                "split (zero variance); drop them from `variables`"
            )
        return cls(tuple(variables), tuple(map(float, offset)), tuple(map(float, scale)), kind)

    def subset(self, variables: list[str] | tuple[str, ...]) -> Normalizer:
        """The same scaling restricted to ``variables`` (e.g. the forecast targets), in order."""
        idx = [self.variables.index(v) for v in variables]
        return Normalizer(
            tuple(variables),
            tuple(self.offset[i] for i in idx),
            tuple(self.scale[i] for i in idx),
            self.kind,
        )

    def _shape(self, values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        shape = [1] * values.ndim
        shape[axis] = len(self.variables)
        return (
            np.asarray(self.offset, dtype=values.dtype).reshape(shape),
            np.asarray(self.scale, dtype=values.dtype).reshape(shape),
        )

    def transform(self, values: np.ndarray, axis: int = 1) -> np.ndarray:
        """Scale raw values; ``axis`` is the channel axis."""
        offset, scale = self._shape(values, axis)
        return (values - offset) / scale

    def inverse(self, values: np.ndarray, axis: int = 1) -> np.ndarray:
        """Map scaled values back to physical units; ``axis`` is the channel axis."""
        offset, scale = self._shape(values, axis)
        return values * scale + offset

    def to_json(self) -> str:
        """Serialise to JSON."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Normalizer:
        """Load from :meth:`to_json` output."""
        d = json.loads(text)
        return cls(tuple(d["variables"]), tuple(d["offset"]), tuple(d["scale"]), d["kind"])

    def save(self, path: str | Path) -> None:
        """Write atomically to ``path``."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        """Read a normaliser written by :meth:`save`."""
        return cls.from_json(Path(path).read_text())
