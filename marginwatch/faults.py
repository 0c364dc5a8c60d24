"""Named crash points: the reliability suite kills a run at any of them to prove nothing is lost.

A point does nothing unless `MARGINWATCH_CRASH_AT` names it; then the process ends at once by
SIGKILL, the way a power cut or the kernel's OOM killer would end it: no cleanup, no `finally`.
"""

from __future__ import annotations

import os
import signal

from marginwatch.config import crash_point_named

_TARGET = crash_point_named()

# Every point, in the order a daily run passes them; `load:*` fall inside the publishing transaction.
POINTS = (
    "run:planned",
    "run:fetched",
    "run:validated",
    "run:staged",
    "run:computed",
    "run:risk",
    "run:alerts",
    "load:raw",
    "load:quarantine",
    "load:prices",
    "load:fx",
    "load:ltv",
    "load:risk",
    "load:dq",
    "load:alerts",
    "load:before-commit",
    "run:committed",
    "run:reported",
    "deliver:one-sent",
    "deliver:one-recorded",
    "run:delivered",
    "backup:copying",
    "backup:taken",
)


def crash_point(name: str) -> None:
    """End the process here with SIGKILL when the suite asked for this point."""
    if name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
