"""Completing configured sub-module partials with the sizes only the parent net knows."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn


def build(factory: Callable[..., nn.Module], **available: Any) -> nn.Module:
    """Call ``factory`` with the entries of ``available`` its signature names.

    A configured encoder, backbone or head is a Hydra partial that lacks the sizes the parent
    computes (input features, horizon, sensors); each takes only the sizes it needs, the way the
    run passes a net only the DataSpec fields it names.

    Args:
        factory: a class or ``functools.partial`` of one.
        available: every size the parent can offer.

    Returns:
        The built module.
    """
    func = factory.func if isinstance(factory, functools.partial) else factory
    target = func.__init__ if inspect.isclass(func) else func
    names = set(inspect.signature(target).parameters)
    given = set(factory.keywords) if isinstance(factory, functools.partial) else set()
    return factory(**{k: v for k, v in available.items() if k in names and k not in given})
