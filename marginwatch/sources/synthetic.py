"""Seeded, offline synthetic market data, labelled `synthetic` wherever it lands.

Every close is a running sum of shocks from a fixed epoch, and every open, high and low
comes from its calendar year's own stream, so a session's bar is the same whatever range is
asked for: a daily run and a backfill over the same dates agree.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from marginwatch.calendar import sessions_between
from marginwatch.sources.base import RAW_BAR_SCHEMA, empty_bars

EPOCH = dt.date(2000, 1, 3)
HORIZON = dt.date(2039, 12, 30)

# The story the default demo tells: ARM rallies after its IPO, then a synthetic crash
# takes the default book's loans through warning into margin call (around March 2026)
# and a recovery brings them back. Prices between anchors follow a Brownian bridge.
ARM_STORY: list[tuple[dt.date, float]] = [
    (dt.date(2023, 9, 14), 63.6),
    (dt.date(2024, 7, 10), 180.0),
    (dt.date(2025, 4, 7), 88.0),
    (dt.date(2025, 11, 11), 150.0),
    (dt.date(2026, 1, 30), 140.0),
    (dt.date(2026, 2, 27), 60.0),
    (dt.date(2026, 3, 11), 29.0),
    (dt.date(2026, 3, 18), 24.5),
    (dt.date(2026, 3, 25), 21.0),
    (dt.date(2026, 4, 8), 20.5),
    (dt.date(2026, 4, 22), 27.0),
    (dt.date(2026, 5, 6), 34.0),
    (dt.date(2026, 7, 1), 48.0),
    (dt.date(2026, 11, 25), 70.0),
]
# Yen strengthens in the sell-off, which lifts the yen loan's LTV further.
JPY_STORY: list[tuple[dt.date, float]] = [
    (EPOCH, 105.0),
    (dt.date(2023, 9, 14), 147.5),
    (dt.date(2025, 11, 11), 154.0),
    (dt.date(2026, 3, 25), 140.0),
    (dt.date(2026, 11, 25), 150.0),
]
STORIES = {"ARM": ARM_STORY, "JPY=X": JPY_STORY}
FX_BASE = {"JPY": 150.0, "EUR": 0.92, "GBP": 0.79, "CHF": 0.88, "CNY": 7.1, "HKD": 7.8}


class SyntheticSource:
    """Deterministic daily bars for any stock symbol and any Yahoo FX symbol (`XXX=X`)."""

    name = "synthetic"
    batch_symbols: int | None = None  # computed in-process: one fetch task for every symbol (threads would contend)

    def __init__(self, seed: int = 20250911) -> None:
        self.seed = seed
        self._stock_days = sessions_between(EPOCH, HORIZON)
        self._fx_days = pl.date_range(EPOCH, HORIZON, "1d", eager=True).filter(
            pl.date_range(EPOCH, HORIZON, "1d", eager=True).dt.weekday() <= 5
        )
        # The same days as day numbers, for searching and cutting without a frame per symbol.
        self._day_numbers = {False: _day_numbers(self._stock_days), True: _day_numbers(self._fx_days)}
        # Where each calendar year's days begin: a bar's open, high and low come from its year's own draws.
        self._year_starts = {is_fx: _year_starts(numbers) for is_fx, numbers in self._day_numbers.items()}

    def fetch_bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        """Return bars in [start, end] (grain: symbol x session date)."""
        parts = [self._series(symbol, start, end) for symbol in sorted(set(symbols))]
        if not parts:
            return empty_bars()
        columns = {name: np.concatenate([part[name] for part in parts]) for name in ("open", "high", "low", "close")}
        volume = np.concatenate([part["volume"] for part in parts])
        days = pl.Series(np.concatenate([part["session_date"] for part in parts])).cast(pl.Date)
        names = [part["symbol"] for part in parts]
        counts = [len(part["close"]) for part in parts]
        return pl.DataFrame(
            {
                "symbol": pl.Series(names, dtype=pl.String).gather(np.repeat(np.arange(len(names)), counts)),
                "session_date": days,
                **columns,
                "adj_close": columns["close"],
                "volume": volume,
                "dividends": np.zeros(len(volume)),
                "stock_splits": np.zeros(len(volume)),
            },
            schema=RAW_BAR_SCHEMA,
        )

    def _series(self, symbol: str, start: dt.date, end: dt.date) -> dict[str, Any]:
        """Return one symbol's bars in [start, end] as columns, the same whatever range is asked for.

        A close is a running sum of the symbol's shocks from the epoch, so only the shocks up to the
        range's end are drawn (a story symbol's bridge needs its whole path). Opens, highs and lows
        take shocks of their calendar year's own stream, so only the years of the range are drawn:
        a daily run draws a year, not four decades, for each of its symbols.
        """
        is_fx = symbol.endswith("=X")
        days = self._fx_days if is_fx else self._stock_days
        numbers = self._day_numbers[is_fx]
        crc = zlib.crc32(symbol.encode())
        rng = np.random.default_rng([self.seed, crc])
        vol = 0.004 if is_fx else 0.022
        first = int(np.searchsorted(numbers, _day_number(start), side="left"))
        last = int(np.searchsorted(numbers, _day_number(end), side="right"))
        story = STORIES.get(symbol)
        if story:
            closes = _story_path(days, story, rng.standard_normal(len(days)), vol * 0.7)
        else:
            level = _fx_level(symbol) if is_fx else float(np.exp(rng.uniform(np.log(8), np.log(400))))
            closes = level * np.exp(_mean_reverting(rng.standard_normal(last) * vol))  # a prefix is exact
        before = max(first - 1, 0)  # each bar opens from the close before it
        shocks = self._year_shocks(crc, is_fx, before, last)
        bars = _ohlcv(closes[before:last], shocks, vol, is_fx)
        bars = {name: values[first - before :] for name, values in bars.items()}
        priced = ~np.isnan(bars["close"])
        return {name: values[priced] for name, values in bars.items()} | {
            "symbol": symbol,
            "session_date": numbers[first:last][priced],
        }

    def _year_shocks(self, crc: int, is_fx: bool, begin: int, stop: int) -> np.ndarray:
        """Return the open, high and low shocks (3 rows) of days [begin, stop), drawn year by year."""
        starts = self._year_starts[is_fx]
        first_year = int(np.searchsorted(starts, begin, side="right")) - 1
        last_year = int(np.searchsorted(starts, max(stop - 1, begin), side="right")) - 1
        drawn = [
            np.random.default_rng([self.seed, crc, 1, year]).standard_normal((3, int(starts[year + 1] - starts[year])))
            for year in range(first_year, last_year + 1)
        ]
        offset = int(starts[first_year])
        return np.concatenate(drawn, axis=1)[:, begin - offset : stop - offset]


def _day_numbers(days: pl.Series) -> np.ndarray:
    return days.cast(pl.Int32).to_numpy()


def _day_number(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def _fx_level(symbol: str) -> float:
    quote = symbol.removesuffix("=X")[-3:]
    return FX_BASE.get(quote, 1.0)


def _year_starts(numbers: np.ndarray) -> np.ndarray:
    """Return the index of each calendar year's first day in `numbers` (day numbers), and the end."""
    years = pl.Series(numbers).cast(pl.Date).dt.year().to_numpy()
    return np.append(np.flatnonzero(np.diff(years, prepend=years[0] - 1)), len(numbers))


def _mean_reverting(steps: np.ndarray, keep: float = 0.998) -> np.ndarray:
    """Return an AR(1) log path x[t] = keep * x[t-1] + steps[t], so levels stay plausible for decades."""
    powers = _powers(keep)[: len(steps)]
    return powers * np.cumsum(steps / powers)


@lru_cache(maxsize=4)
def _powers(keep: float) -> np.ndarray:
    """Return keep ** t for every day from the epoch to the horizon (each element as if computed alone)."""
    return keep ** np.arange((HORIZON - EPOCH).days + 1)  # more than the weekdays of the span


def _story_path(days: pl.Series, story: list[tuple[dt.date, float]], shocks: np.ndarray, vol: float) -> np.ndarray:
    """Log-linear path through the anchors plus bridge noise pinned at each anchor; NaN before the first."""
    index = days.cast(pl.Int32).to_numpy()
    anchor_x = np.array([days.search_sorted(day) for day, _ in story])
    anchor_y = np.log([price for _, price in story])
    noise = np.cumsum(shocks * vol)
    x = np.arange(len(index))
    pinned = np.interp(x, anchor_x, noise[anchor_x])
    drift_after = np.where(x > anchor_x[-1], noise - noise[anchor_x[-1]], 0.0)
    bridge = np.where(x <= anchor_x[-1], noise - pinned, drift_after)
    log_path = np.interp(x, anchor_x, anchor_y) + bridge
    log_path[x < anchor_x[0]] = np.nan
    return np.exp(log_path)


def _ohlcv(closes: np.ndarray, shocks: np.ndarray, vol: float, is_fx: bool) -> dict[str, np.ndarray]:
    """Return consistent OHLCV columns around a close path (high >= open, close >= low)."""
    previous = np.concatenate([[closes[0]], closes[:-1]])
    previous = np.where(np.isnan(previous), closes, previous)  # first bar of a story symbol
    opens = previous * np.exp(shocks[0] * vol * 0.3)
    high = np.maximum(opens, closes) * (1 + np.abs(shocks[1]) * vol * 0.5)
    low = np.minimum(opens, closes) * (1 - np.abs(shocks[2]) * vol * 0.5)
    volume = np.zeros(len(closes)) if is_fx else np.round(2e6 * np.exp(np.abs(shocks[1]) * 0.5))
    rounding = 4 if is_fx else 2
    return {
        "open": np.round(opens, rounding),
        "high": np.round(high, rounding),
        "low": np.round(low, rounding),
        "close": np.round(closes, rounding),
        "volume": volume,
    }
