"""The market-data source interface and the raw-bar frame every source returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

import polars as pl

# One row per (symbol, session_date) as the source served it; prices in the symbol's
# trading currency, split-adjusted as Yahoo serves them; `stock_splits` is the split
# ratio effective that session (0.0 when none), `dividends` the cash amount (0.0 when none).
RAW_BAR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "session_date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "adj_close": pl.Float64(),
    "volume": pl.Float64(),
    "dividends": pl.Float64(),
    "stock_splits": pl.Float64(),
}


def empty_bars() -> pl.DataFrame:
    """Return an empty raw-bar frame (grain: one row per symbol and session date)."""
    return pl.DataFrame(schema=RAW_BAR_SCHEMA)


class MarketSource(Protocol):
    """Daily bars for stock symbols and Yahoo FX symbols such as `JPY=X`."""

    name: str  # stored in every table's `source` column: yfinance, synthetic, csv:DIR
    # Optional `batch_symbols: int | None`: symbols per fetch task (default 100, fetched 8 at a time);
    # None asks for every symbol in one task, for a source that computes its bars in-process.

    def fetch_bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        """Return bars with session dates in [start, end] (grain: symbol x session date).

        Columns and types are RAW_BAR_SCHEMA, in that order. Raises SourceUnavailable
        naming the symbol when a symbol cannot be served, and InputError for a malformed
        source file.
        """
        ...
