"""Scheduled cycle: new data -> train -> promote -> forecast.  `python -m pipelines.cycle`.

Exit codes: 0 done (promoted, kept, not registered, or no new data); 75 another cycle holds the
lock (EX_TEMPFAIL: the scheduler retries); 2 bad input or configuration; 1 anything unexpected.
"""

import os
import sys

from omegaconf import DictConfig

from forecast.runs.cycle import CycleBusyError, cycle
from pipelines._cli import hydra_app

EX_TEMPFAIL = getattr(os, "EX_TEMPFAIL", 75)


@hydra_app("cycle")
def main(cfg: DictConfig) -> None:
    """Run or resume one cycle; print one line saying what it did."""
    try:
        outcome = cycle(cfg)
    except CycleBusyError as e:
        print(f"busy: {e}", file=sys.stderr, flush=True)
        sys.exit(EX_TEMPFAIL)
    print(outcome.message, flush=True)


if __name__ == "__main__":
    main()
