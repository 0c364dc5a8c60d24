"""Staging of raw bars (deduplication, stock/FX split, typing), fx_symbol, and level_changes."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

from marginwatch.sources.base import RAW_BAR_SCHEMA
from transforms.levels import level_changes
from transforms.staging import (
    FX_SCHEMA,
    PRICE_SCHEMA,
    deduplicate_bars,
    fx_symbol,
    label_raw_bars,
    stage_fx_rates,
    stage_prices,
)

D = dt.date
EARLY = dt.datetime(2025, 3, 5, 21, 0, tzinfo=dt.UTC)
LATE = dt.datetime(2025, 3, 6, 21, 0, tzinfo=dt.UTC)


def bars(rows: list[tuple]) -> pl.DataFrame:
    """Raw bars from (symbol, session_date, close, volume) tuples; open/high/low = close."""
    return pl.DataFrame(
        [
            {
                "symbol": symbol,
                "session_date": session_date,
                "open": close,
                "high": close,
                "low": close,
                "close": close,
                "adj_close": close,
                "volume": volume,
                "dividends": 0.0,
                "stock_splits": 0.0,
            }
            for symbol, session_date, close, volume in rows
        ],
        schema=RAW_BAR_SCHEMA,
    )


def test_deduplicate_bars_keeps_latest_fetch_and_drops_null_or_nan_close() -> None:
    late = label_raw_bars(
        bars(
            [
                ("ARM", D(2025, 3, 3), 101.0, 10.0),  # newer version of 03-03
                ("ARM", D(2025, 3, 4), None, 20.0),  # newer fetch has no close: the older one stays
                ("ARM", D(2025, 3, 5), math.nan, 30.0),  # NaN close only: no bar at all
            ]
        ),
        "yahoo",
        "run-late",
        LATE,
    )
    early = label_raw_bars(
        bars(
            [
                ("ARM", D(2025, 3, 3), 100.0, 1.0),
                ("ARM", D(2025, 3, 4), 102.0, 2.0),
                ("ARM", D(2025, 3, 5), None, 3.0),
                ("JPY=X", D(2025, 3, 3), 150.0, 0.0),
            ]
        ),
        "yahoo",
        "run-early",
        EARLY,
    )
    # the later fetch comes first in row order: the fetch time decides, not the row order
    out = deduplicate_bars(pl.concat([late, early]).lazy()).collect()
    assert out.select("symbol", "session_date", "close", "run_id", "fetched_at").rows() == [
        ("ARM", D(2025, 3, 3), 101.0, "run-late", LATE),
        ("ARM", D(2025, 3, 4), 102.0, "run-early", EARLY),
        ("JPY=X", D(2025, 3, 3), 150.0, "run-early", EARLY),
    ]


def test_label_raw_bars_adds_source_run_id_and_utc_fetch_time() -> None:
    out = label_raw_bars(bars([("ARM", D(2025, 3, 3), 100.0, 1.0)]), "csv:data", "run-1", LATE)
    assert out.columns == [*RAW_BAR_SCHEMA, "source", "run_id", "fetched_at"]
    assert out.schema["fetched_at"] == pl.Datetime("us", "UTC")
    assert out.select("source", "run_id", "fetched_at").row(0) == ("csv:data", "run-1", LATE)


def test_stage_prices_excludes_fx_symbols_and_casts_volume_to_int64() -> None:
    raw = label_raw_bars(
        bars(
            [
                ("ARM", D(2025, 3, 3), 100.0, 1_234_567.0),
                ("JPY=X", D(2025, 3, 3), 150.0, 0.0),
                ("EURUSD=X", D(2025, 3, 3), 1.05, 0.0),
                ("ARM", D(2025, 3, 4), 101.0, 0.0),
            ]
        ),
        "yahoo",
        "run-1",
        LATE,
    )
    out = stage_prices(raw.lazy()).collect()
    assert list(out.schema.items()) == list(PRICE_SCHEMA.items())
    assert out.schema["volume"] == pl.Int64()
    assert out.select("symbol", "session_date", "close", "volume").rows() == [
        ("ARM", D(2025, 3, 3), 100.0, 1_234_567),
        ("ARM", D(2025, 3, 4), 101.0, 0),
    ]


def test_stage_fx_rates_maps_yahoo_symbols_to_pairs() -> None:
    raw = label_raw_bars(
        bars(
            [
                ("JPY=X", D(2025, 3, 3), 150.25, 0.0),
                ("ARM", D(2025, 3, 3), 100.0, 5.0),
                ("EURUSD=X", D(2025, 3, 3), 1.0825, 0.0),
            ]
        ),
        "yahoo",
        "run-1",
        LATE,
    )
    out = stage_fx_rates(raw.lazy()).collect()
    assert list(out.schema.items()) == list(FX_SCHEMA.items())
    assert out.select("pair", "base_currency", "quote_currency", "yahoo_symbol", "session_date", "rate").rows() == [
        ("USDJPY", "USD", "JPY", "JPY=X", D(2025, 3, 3), 150.25),  # yen per dollar, rate = close
        ("EURUSD", "EUR", "USD", "EURUSD=X", D(2025, 3, 3), 1.0825),  # dollars per euro
    ]


def test_fx_symbol_follows_yahoo_convention() -> None:
    assert fx_symbol("USD", "JPY") == "JPY=X"
    assert fx_symbol("EUR", "USD") == "EURUSD=X"
    assert fx_symbol("EUR", "JPY") == "EURJPY=X"


def test_level_changes_returns_only_sessions_where_status_differs_from_previous() -> None:
    d = [D(2025, 3, day) for day in (3, 4, 5, 6, 7)]
    rows = [
        # (loan_id, as_of_date, status, ltv, price); deliberately out of order
        ("L1", d[2], "warning", 0.45, 90.0),
        ("L2", d[0], "liquidation", 0.7, 10.0),
        ("L1", d[0], "ok", 0.30, 120.0),
        ("L1", d[4], "ok", 0.35, 110.0),
        ("L1", d[1], "ok", 0.35, 110.0),
        ("L1", d[3], "margin_call", 0.55, 80.0),
        ("L2", d[1], "liquidation", 0.7, 10.0),
        ("L3", d[0], "ok", 0.1, 10.0),
        ("L3", d[1], "warning", 0.41, 9.0),
    ]
    ltv = pl.DataFrame(
        rows,
        schema={
            "loan_id": pl.String(),
            "as_of_date": pl.Date(),
            "status": pl.String(),
            "ltv": pl.Float64(),
            "price": pl.Float64(),
        },
        orient="row",
    )
    out = level_changes(ltv)
    assert out.columns == ["loan_id", "as_of_date", "previous_status", "status", "ltv", "price"]
    assert out.rows() == [
        ("L1", d[2], "ok", "warning", 0.45, 90.0),
        ("L1", d[3], "warning", "margin_call", 0.55, 80.0),
        ("L1", d[4], "margin_call", "ok", 0.35, 110.0),
        # L2 never changes; a loan's first session is not a change
        ("L3", d[1], "ok", "warning", 0.41, 9.0),
    ]
