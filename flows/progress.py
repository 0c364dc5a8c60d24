"""An optional progress hook the CLI sets, so a terminal can show how far a run is."""

from __future__ import annotations

from collections.abc import Callable

Reporter = Callable[[str, int, int], None]
_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> None:
    """Route progress reports to `reporter` (None to stop reporting)."""
    global _reporter
    _reporter = reporter


def report(stage: str, done: int, total: int) -> None:
    """Tell the reporter, if any, that `done` of `total` steps of `stage` are finished."""
    if _reporter is not None:
        _reporter(stage, done, total)
