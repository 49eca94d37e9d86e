"""Shape checks shared by the recurrent cells and stacks; each raises a ValueError naming both."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def check_rank(x: Tensor, rank: int, layout: str, name: str = "x") -> None:
    """Raise unless `x` has `rank` dims; `layout` (e.g. "(B, C, H, W)") goes into the message."""
    if x.dim() != rank:
        raise ValueError(
            f"{name}: expected a {rank}-d tensor {layout}, "
            f"got {x.dim()}-d of shape {tuple(x.shape)}"
        )


def check_dim(x: Tensor, dim: int, size: int, what: str, name: str = "x") -> None:
    """Raise unless `x.shape[dim] == size`; `what` names the axis (e.g. "channels")."""
    if x.shape[dim] != size:
        raise ValueError(
            f"{name}: expected {size} {what} at dim {dim}, got {x.shape[dim]} "
            f"(shape {tuple(x.shape)})"
        )


def check_shape(x: Tensor, shape: Sequence[int], name: str) -> None:
    """Raise unless `x` has exactly `shape` (used for carried-in states)."""
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")


def check_odd_kernel(kernel_size: int) -> None:
    """Raise unless the kernel is a positive odd int, so 'same' padding keeps the grid size."""
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: expected a positive odd int, got {kernel_size!r}")


def check_positive(value: int, name: str) -> None:
    """Raise unless `value` is a positive int (sizes, channel counts, depths)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


def check_choice(value: object, choices: Sequence[object], name: str) -> None:
    """Raise unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def check_non_negative(value: int, name: str) -> None:
    """Raise unless `value` is an int >= 0 (0 = "no input channels" for the conv cells)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: expected an int >= 0, got {value!r}")
