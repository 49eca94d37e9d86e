"""The one error boundary of every entry point: known failures become one ``error:`` line, exit 2.

Hydra prints its own errors (an unknown key, a bad override, a failed ``_target_`` call) as a
shortened traceback and exits 1. :func:`hydra_app` asks Hydra to re-raise instead
(``HYDRA_FULL_ERROR``) and reports here: one line naming what was wrong and what is expected.
The user's ``HYDRA_FULL_ERROR=1`` (or ``--debug`` for the server) still shows the whole traceback.
Unknown exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import errno
import functools
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from forecast.environ import scoped_environ
from forecast.errors import ForecastError

F = TypeVar("F", bound=Callable[..., Any])
# the user's choice, recorded once so that child processes (DDP ranks) inherit it, not ours
DEBUG_ENV = "FORECAST_CLI_DEBUG"
# a failed write of a file: reported by name, never with a traceback
CONF = str(Path(__file__).resolve().parents[1] / "conf")
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG}


def debugging() -> bool:
    """Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1`` at the first entry point)."""
    if DEBUG_ENV not in os.environ:
        full = os.environ.get("HYDRA_FULL_ERROR", "")
        os.environ[DEBUG_ENV] = "1" if full not in ("", "0") else "0"
    return os.environ[DEBUG_ENV] == "1"


def _first_line(text: str) -> str:
    return " ".join(text.strip().split("\n", 1)[0].split())


def _omegaconf_line(e: BaseException) -> str:
    """An OmegaConf error's message with its ``full_key`` (what config key was wrong)."""
    text = _first_line(str(e))
    key = getattr(e, "full_key", None)
    return f"{text} (config key {key})" if key and str(key) not in text else text


def _options(text: str) -> list[str]:
    """The option names Hydra lists after ``Available options in '<group>':``."""
    if "Available options" not in text:
        return []
    tail = text.split("Available options", 1)[1].splitlines()[1:]
    names = []
    for line in tail:
        if not line.startswith("\t"):
            break
        names.append(line.strip())
    return names


def describe(e: BaseException) -> str | None:
    """The one-line message for a known failure, or None for a bug (keeps its traceback).

    Args:
        e: what the entry point raised.

    Returns:
        The text after ``error:``.
    """
    from hydra.errors import HydraException, InstantiationException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(e, ForecastError):
        return _first_line(str(e)) if "\n" not in str(e).strip() else " ".join(str(e).split())
    if isinstance(e, InstantiationException):
        # a constructor refused its arguments: our own errors read as they are
        cause = e.__cause__
        if isinstance(cause, ForecastError):
            return describe(cause)
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        key = next((ln for ln in lines if ln.startswith("full_key:")), "")
        what = _first_line(str(cause)) if cause is not None else " ".join(lines[1:2])
        where = f" (config key {key.split(':', 1)[1].strip()})" if key else ""
        return f"{lines[0] if lines else 'instantiation failed'} {what}{where}"
    if isinstance(e, OverrideParseException):
        return f"bad override '{e.override}': {_first_line(str(e))} (expected key=value)"
    if isinstance(e, HydraException):  # composition: unknown key or option
        parts = [_first_line(str(e)).rstrip(".")]
        if isinstance(e.__cause__, OmegaConfBaseException):
            parts.append(_omegaconf_line(e.__cause__))
        options = _options(str(e))
        if options:
            parts.append(f"expected one of: {', '.join(options)}")
        return "; ".join(p for p in parts if p)
    if isinstance(e, OmegaConfBaseException):  # e.g. a missing mandatory value (???)
        return _omegaconf_line(e)
    if isinstance(e, pickle.UnpicklingError):
        return f"refused to load a file that is not plain tensors: {_first_line(str(e))}"
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
        where = f" {e.filename}" if e.filename else ""
        return f"cannot write{where}: {e.strerror or e}; free space or choose another directory"
    return None


def report(e: BaseException) -> NoReturn:
    """Print the known failure ``e`` as one ``error:`` line on stderr and exit 2; else re-raise."""
    message = describe(e)
    if message is None or debugging():
        raise e
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def guarded(main: F) -> F:
    """Wrap a CLI ``main`` (or a Hydra task function) in the error boundary."""

    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 (known ones reported, the rest re-raised)
            report(e)

    return run  # type: ignore[return-value]


def hydra_app(config_name: str) -> Callable[[F], Callable[[], Any]]:
    """``@hydra.main`` on ``conf/<config_name>.yaml`` with the error boundary inside and out.

    Inside, the job's own failures are reported before Hydra adds its "Error executing job"
    line; outside, composition failures (unknown key or option, bad override) are, which Hydra
    raises instead of printing because ``HYDRA_FULL_ERROR`` is set here.

    Args:
        config_name: the primary config in ``conf/``.
    """
    import hydra

    def wrap(task: F) -> Callable[[], Any]:
        app = hydra.main(version_base="1.3", config_path=CONF, config_name=config_name)
        main = guarded(app(guarded(task)))

        @functools.wraps(task)
        def run() -> Any:
            with scoped_environ(DEBUG_ENV, "HYDRA_FULL_ERROR"):
                debugging()  # record the user's choice before asking Hydra to re-raise
                os.environ["HYDRA_FULL_ERROR"] = "1"
                return main()

        return run

    return wrap
