"""Raw bars to staging: rename, cast, deduplicate; stock prices and FX rates apart."""

from __future__ import annotations

import datetime as dt

import polars as pl

PRICE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "session_date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "adj_close": pl.Float64(),
    "volume": pl.Int64(),
    "dividends": pl.Float64(),
    "stock_splits": pl.Float64(),
    "source": pl.String(),
    "run_id": pl.String(),
    "fetched_at": pl.Datetime("us", "UTC"),
    "is_unconfirmed": pl.Boolean(),
}

FX_SCHEMA: dict[str, pl.DataType] = {
    "pair": pl.String(),
    "session_date": pl.Date(),
    "base_currency": pl.String(),
    "quote_currency": pl.String(),
    "yahoo_symbol": pl.String(),
    "rate": pl.Float64(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "source": pl.String(),
    "run_id": pl.String(),
    "fetched_at": pl.Datetime("us", "UTC"),
}


def fx_symbol(base: str, quote: str) -> str:
    """Return the Yahoo symbol quoting `quote` units per one `base` unit (USD/JPY is `JPY=X`)."""
    return f"{quote}=X" if base == "USD" else f"{base}{quote}=X"


def fx_pair_expr(symbol: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Return (base, quote) currency expressions for Yahoo FX symbols (`JPY=X`, `EURUSD=X`)."""
    code = symbol.str.strip_suffix("=X")
    base = pl.when(code.str.len_chars() == 3).then(pl.lit("USD")).otherwise(code.str.slice(0, 3))
    return base, code.str.slice(-3)


def label_raw_bars(bars: pl.DataFrame, source: str, run_id: str, fetched_at: dt.datetime) -> pl.DataFrame:
    """Return bars with `source`, `run_id` and `fetched_at` (grain: symbol x session date x fetch)."""
    return bars.with_columns(
        source=pl.lit(source),
        run_id=pl.lit(run_id),
        fetched_at=pl.lit(fetched_at).cast(pl.Datetime("us", "UTC")),
    )


def deduplicate_bars(raw: pl.LazyFrame) -> pl.LazyFrame:
    """Return the latest fetched version of each bar with a close (grain: symbol x session date)."""
    return (
        raw.filter(pl.col("close").is_not_null() & pl.col("close").is_not_nan())
        .with_row_index("_order")
        .sort("fetched_at", "_order")
        .unique(["symbol", "session_date"], keep="last", maintain_order=False)
        .drop("_order")
        .sort("symbol", "session_date")
    )


def stage_prices(bars: pl.LazyFrame) -> pl.LazyFrame:
    """Return stock bars typed for `staging.prices` (grain: symbol x session date)."""
    if "is_unconfirmed" not in bars.collect_schema().names():
        bars = bars.with_columns(is_unconfirmed=pl.lit(False))
    return (
        bars.filter(~pl.col("symbol").str.ends_with("=X"))
        .with_columns(volume=pl.col("volume").round().cast(pl.Int64, strict=False))
        .select([pl.col(name).cast(dtype) for name, dtype in PRICE_SCHEMA.items()])
    )


def stage_fx_rates(bars: pl.LazyFrame) -> pl.LazyFrame:
    """Return FX bars typed for `staging.fx_rates`, rate = close (grain: pair x session date)."""
    base, quote = fx_pair_expr(pl.col("symbol"))
    return (
        bars.filter(pl.col("symbol").str.ends_with("=X"))
        .with_columns(base_currency=base, quote_currency=quote, yahoo_symbol=pl.col("symbol"))
        .with_columns(
            pair=pl.col("base_currency") + pl.col("quote_currency"),
            rate=pl.col("close"),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in FX_SCHEMA.items()])
    )


def earliest_revision(
    history: pl.DataFrame, incoming: pl.DataFrame, keys: list[str], values: list[str]
) -> dt.date | None:
    """Return the earliest session date whose incoming row differs from the staged one, or None."""
    joined = incoming.select(*keys, *values).join(history.select(*keys, *values), on=keys, suffix="_staged")
    changed = joined.filter(pl.any_horizontal([pl.col(v).ne_missing(pl.col(f"{v}_staged")) for v in values]))
    return changed["session_date"].min() if changed.height else None  # type: ignore[return-value]
