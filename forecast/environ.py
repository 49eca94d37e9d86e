"""Environment variables set for a scope and restored after it, whatever the scope raised."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def scoped_environ(*names: str, values: Mapping[str, str] | None = None) -> Iterator[None]:
    """Set ``values`` in ``os.environ``; restore ``names`` and the keys of ``values`` afterwards.

    A name absent before is removed again (``monkeypatch.delenv`` on an absent name records
    nothing, so a setting written inside the scope would otherwise outlive it).
    """
    saved = {n: os.environ.get(n) for n in (*names, *(values or {}))}
    os.environ.update(values or {})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
