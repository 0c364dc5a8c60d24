"""Python's cyclic garbage collector during a run: off what the process held before, and less often."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# A young-generation collection every 10,000 net allocations instead of every 700: reading a
# 10,000-loan book allocates hundreds of thousands of objects, and at the default pace that sets
# off over 500 young collections and full ones. Cyclic garbage waits a little longer; everything
# else (frames, arrays) is freed by reference counting as always.
YOUNG_THRESHOLD = 10_000

_lock = threading.Lock()
_runs = 0  # runs in progress in this process (flows called from threads share one collector)
_saved: tuple[int, ...] = ()


@contextmanager
def run_collector() -> Iterator[None]:
    """Freeze the objects alive before the run and raise the young threshold; both undone when the last run ends.

    A full collection walks every object the process holds: Prefect's, GX's and the imports'
    (about 400,000 before a run) and the run's own, 0.3 s each, twice in a 10,000-loan daily run.
    Frozen, the first are skipped; thawed at the end, a long-lived serving process collects them
    as before, so nothing leaks.
    """
    global _runs, _saved
    with _lock:
        if _runs == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(YOUNG_THRESHOLD, _saved[0]), *_saved[1:])
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
