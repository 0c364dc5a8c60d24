"""A run fetches in tasks of 100 symbols, or in one task from a source that computes its bars in-process."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence

import polars as pl
import pytest
from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows import tasks
from marginwatch.sources.synthetic import SyntheticSource

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
DAY = dt.date(2026, 1, 9)
SYMBOLS = [f"S{i:04d}" for i in range(1, 251)] + ["JPY=X"]


class Recording(SyntheticSource):
    """The synthetic source, noting each batch it is asked for."""

    def __init__(self, batch_symbols: int | None) -> None:
        super().__init__()
        self.batch_symbols = batch_symbols
        self.asked: list[list[str]] = []
        self._lock = threading.Lock()

    def fetch_bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        with self._lock:
            self.asked.append(list(symbols))
        return super().fetch_bars(symbols, start, end)


def fetch(source: Recording) -> pl.DataFrame:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def run() -> pl.DataFrame:
        return tasks.fetch_bars(source, SYMBOLS, dt.date(2026, 1, 5), DAY)

    return run()


@pytest.mark.parametrize(("batch", "expected"), [(100, [100, 100, 51]), (None, [251])])
def test_a_source_is_asked_in_its_batches_and_the_bars_are_the_same(batch: int | None, expected: list[int]) -> None:
    source = Recording(batch)
    bars = fetch(source)
    assert sorted((len(asked) for asked in source.asked), reverse=True) == expected
    assert sorted(symbol for asked in source.asked for symbol in asked) == sorted(SYMBOLS)
    direct = SyntheticSource().fetch_bars(SYMBOLS, dt.date(2026, 1, 5), DAY)
    assert bars.sort("symbol", "session_date").equals(direct.sort("symbol", "session_date"))
    assert bars["symbol"].n_unique() == len(SYMBOLS)


def test_the_synthetic_source_is_fetched_in_one_task() -> None:
    assert SyntheticSource().batch_symbols is None
