"""SyntheticSource: a session's bar is the same whatever range asks for it, and its bars are consistent."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from marginwatch.sources.base import RAW_BAR_SCHEMA
from marginwatch.sources.synthetic import SyntheticSource

SYMBOLS = ["ARM", "JPY=X", "EUR=X", "NVDA", "7203.T"]  # story stock, story FX, plain FX, plain stocks
KEY = ["symbol", "session_date"]


def bars(start: dt.date, end: dt.date, seed: int = 20250911) -> pl.DataFrame:
    """Return the synthetic bars of every test symbol in [start, end]."""
    return SyntheticSource(seed).fetch_bars(SYMBOLS, start, end)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (dt.date(2024, 12, 31), dt.date(2024, 12, 31)),  # one session, the last of its year
        (dt.date(2024, 12, 30), dt.date(2025, 1, 3)),  # across a year's end
        (dt.date(2025, 1, 2), dt.date(2025, 1, 2)),  # the first session of a year
        (dt.date(2026, 10, 23), dt.date(2026, 10, 30)),  # a daily run's window
        (dt.date(2019, 3, 1), dt.date(2023, 7, 14)),  # years in the middle of a backfill
    ],
)
def test_a_range_gives_the_same_bars_as_a_longer_range_around_it(start: dt.date, end: dt.date) -> None:
    whole = bars(dt.date(2016, 1, 4), dt.date(2026, 11, 26))
    part = bars(start, end)
    assert part.height > 0
    assert part.schema == RAW_BAR_SCHEMA
    expected = whole.filter(pl.col("session_date").is_between(start, end))
    assert part.sort(KEY).equals(expected.sort(KEY))


def test_bars_are_consistent_and_each_symbol_keeps_to_its_calendar() -> None:
    found = bars(dt.date(2020, 1, 1), dt.date(2026, 11, 26))
    assert found.filter(pl.col("high") < pl.max_horizontal("open", "close")).is_empty()
    assert found.filter(pl.col("low") > pl.min_horizontal("open", "close")).is_empty()
    assert found.filter(pl.col("low") <= 0).is_empty()
    assert found.select(pl.struct(KEY).is_unique().all()).item()
    days = found.group_by("symbol").agg(pl.len(), pl.col("session_date").min()).sort("symbol")
    by_symbol = {row["symbol"]: row for row in days.iter_rows(named=True)}
    assert by_symbol["ARM"]["session_date"] == dt.date(2023, 9, 14)  # priced from its IPO only
    assert by_symbol["JPY=X"]["len"] == by_symbol["EUR=X"]["len"] > by_symbol["NVDA"]["len"]  # FX trades holidays
    assert by_symbol["NVDA"]["len"] == by_symbol["7203.T"]["len"]


def test_the_story_holds_and_the_seed_changes_everything_else() -> None:
    day = dt.date(2026, 11, 25)
    ours, other = bars(day, day), bars(day, day, seed=7)
    close = dict(ours.select("symbol", "close").iter_rows())
    assert close["ARM"] == pytest.approx(70.0)  # the demo's anchors are prices, not draws
    assert close["JPY=X"] == pytest.approx(150.0)
    joined = ours.join(other, on=KEY, suffix="_other").filter(~pl.col("symbol").is_in(["ARM", "JPY=X"]))
    assert joined.height == 3
    assert joined.filter(pl.col("close") == pl.col("close_other")).is_empty()
    assert joined.filter(pl.col("high") == pl.col("high_other")).is_empty()
