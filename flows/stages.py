"""Where a run's time goes: wall seconds by stage, kept on its record (`meta.runs.stage_seconds`).

The flow's body runs within `timing_run()`; the code it calls marks its stages with `stage(name)`
(stages do not nest: a stage's time is counted once) or `timed(name, items)` for the waits of a
loop. Outside a run both only run what they wrap.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class _Clock:
    started: float = field(default_factory=time.perf_counter)
    seconds: dict[str, float] = field(default_factory=dict)


_CLOCK: ContextVar[_Clock | None] = ContextVar("marginwatch_run_clock", default=None)


@contextmanager
def timing_run() -> Iterator[None]:
    """Time the stages of the run whose body this wraps."""
    token = _CLOCK.set(_Clock())
    try:
        yield
    finally:
        _CLOCK.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Count the wall time of the block in stage `name` of the current run (added up over repeats)."""
    clock = _CLOCK.get()
    started = time.perf_counter()
    try:
        yield
    finally:
        if clock is not None:
            clock.seconds[name] = clock.seconds.get(name, 0.0) + time.perf_counter() - started


def timed(name: str, items: Iterable[T]) -> Iterator[T]:
    """Yield `items`, counting each wait for the next one in stage `name` (a loop over computed parts)."""
    iterator = iter(items)
    while True:
        with stage(name):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def stage_seconds() -> dict[str, float]:
    """Return the current run's seconds by stage so far, `other` (in no stage) and `total`; {} outside a run."""
    clock = _CLOCK.get()
    if clock is None:
        return {}
    total = time.perf_counter() - clock.started
    staged = {name: round(seconds, 3) for name, seconds in clock.seconds.items()}
    return staged | {"other": round(max(total - sum(clock.seconds.values()), 0.0), 3), "total": round(total, 3)}
