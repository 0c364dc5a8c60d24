"""Check columns the data-quality suites validate: pure Polars, derived beside the data."""

from __future__ import annotations

import datetime as dt

import polars as pl

# Yahoo FX closes outside these bands are not plausible (quote units per base unit).
FX_BANDS: dict[str, tuple[float, float]] = {
    "USDJPY": (50.0, 400.0),
    "EURUSD": (0.5, 2.5),
    "GBPUSD": (0.8, 3.0),
    "USDCHF": (0.4, 2.5),
    "USDCNY": (4.0, 12.0),
    "USDHKD": (7.0, 8.5),
    "EURJPY": (70.0, 400.0),
    "GBPJPY": (80.0, 500.0),
}
# Pairs without a band must stay within this factor of their own median in the batch.
FX_DEFAULT_SPREAD = 3.0


def _session_index(sessions: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({"session_date": sessions, "_idx": pl.int_range(len(sessions), eager=True, dtype=pl.Int32)})


def add_bar_checks(
    bars: pl.DataFrame,
    previous: pl.DataFrame,
    sessions: pl.Series,
    expected_newest: dt.date,
    move_bound: float,
) -> pl.DataFrame:
    """Return incoming stock bars with check columns (grain: the incoming rows, order kept).

    `previous` holds each symbol's last staged bars before the batch (symbol, session_date,
    close); they anchor the first incoming bar's move, gap and reversion. Check columns:
    `is_session`, `sessions_since_previous`, `close_move`, `is_large_move`,
    `is_volume_integral`, `symbol_newest_session`, `is_fresh`, `is_repeat_of_previous`,
    `is_confirmed_by_next`, `is_reversion` and `is_unconfirmed` (a large move not yet confirmed).
    """
    index = _session_index(sessions)
    anchor = previous.select("symbol", "session_date", "close").with_columns(_anchor=pl.lit(True))
    incoming = bars.with_row_index("_row").with_columns(_anchor=pl.lit(False))
    series = pl.concat([anchor, incoming], how="diagonal_relaxed").sort("symbol", "session_date", "_anchor")
    series = series.join(index, on="session_date", how="left", maintain_order="left")  # shifts over symbol follow
    previous_close = pl.col("close").shift(1).over("symbol")
    move = pl.col("close") / previous_close - 1
    splits = bars.filter(pl.col("stock_splits") > 0).group_by("symbol").agg(_ratio=pl.col("stock_splits").first())
    large = (pl.col("close_move").abs() > move_bound) & ~pl.col("_explained")
    checked = (
        series.with_columns(
            is_session=pl.col("_idx").is_not_null(),
            sessions_since_previous=pl.col("_idx") - pl.col("_idx").shift(1).over("symbol"),
            close_move=move,
            _move_before_previous=pl.col("close") / pl.col("close").shift(2).over("symbol") - 1,
            _next_move=pl.col("close").shift(-1).over("symbol") / pl.col("close") - 1,
            is_repeat_of_previous=pl.all_horizontal(
                [pl.col(c) == pl.col(c).shift(1).over("symbol") for c in ("open", "high", "low", "close", "volume")]
            ).fill_null(False),
        )
        .join(splits, on="symbol", how="left", maintain_order="left")
        .with_columns(
            _explained=pl.col("_ratio").is_not_null()
            & (
                (((1 + pl.col("close_move")) * pl.col("_ratio") - 1).abs() <= move_bound)
                | (((1 + pl.col("close_move")) / pl.col("_ratio") - 1).abs() <= move_bound)
            )
        )
        .with_columns(is_large_move=large.fill_null(False))
        .with_columns(
            # A large move is confirmed once the next session holds the new level; a bar that
            # returns to the level before a spike is the spike undone, not a move of its own.
            is_confirmed_by_next=(pl.col("_next_move").abs() <= move_bound).fill_null(False),
            is_reversion=(
                pl.col("is_large_move").shift(1).over("symbol") & (pl.col("_move_before_previous").abs() <= move_bound)
            ).fill_null(False),
            is_volume_integral=pl.col("volume") == pl.col("volume").floor(),
            symbol_newest_session=pl.col("session_date").max().over("symbol"),
        )
        .with_columns(
            is_fresh=pl.col("symbol_newest_session") == expected_newest,
            is_unconfirmed=pl.col("is_large_move") & ~pl.col("is_confirmed_by_next") & ~pl.col("is_reversion"),
        )
        .filter(~pl.col("_anchor"))
        .sort("_row")
    )
    return checked.drop(
        "_row", "_anchor", "_idx", "_ratio", "_explained", "_move_before_previous", "_next_move"
    ).with_columns(pl.col("sessions_since_previous").cast(pl.Int32))


def add_fx_checks(fx_bars: pl.DataFrame, previous: pl.DataFrame | None = None) -> pl.DataFrame:
    """Return incoming FX rows with check columns (grain: pair x session date, order kept).

    `previous` holds each pair's last staged date before the batch (pair, session_date), so a
    gap between the warehouse and the batch is seen too. Check columns: `is_in_band`,
    `is_weekday`, `weekdays_since_previous`, `is_high_low_bounding`.
    """
    median = pl.col("rate").median().over("pair")
    bands = pl.DataFrame(
        [(pair, low, high) for pair, (low, high) in FX_BANDS.items()],
        schema={"pair": pl.String, "_low": pl.Float64, "_high": pl.Float64},
        orient="row",
    )
    weekday_number = pl.col("session_date").dt.weekday()
    business_days = pl.business_day_count(pl.col("session_date").shift(1).over("pair"), pl.col("session_date"))
    incoming = fx_bars.with_row_index("_row")
    if previous is not None and previous.height:
        firsts = incoming.group_by("pair").agg(_first=pl.col("session_date").min())
        anchors = (
            previous.join(firsts, on="pair")
            .filter(pl.col("session_date") < pl.col("_first"))
            .group_by("pair")
            .agg(pl.col("session_date").max())
        )
        incoming = pl.concat([incoming, anchors], how="diagonal_relaxed")
    checked = (
        incoming.join(bands, on="pair", how="left")
        .sort("pair", "session_date")
        .with_columns(
            is_in_band=pl.when(pl.col("_low").is_not_null())
            .then(pl.col("rate").is_between(pl.col("_low"), pl.col("_high")))
            .otherwise(pl.col("rate").is_between(median / FX_DEFAULT_SPREAD, median * FX_DEFAULT_SPREAD)),
            is_weekday=weekday_number <= 5,
            weekdays_since_previous=business_days.cast(pl.Int32),
            is_high_low_bounding=(
                (pl.col("low") <= pl.min_horizontal("open", "rate"))
                & (pl.col("high") >= pl.max_horizontal("open", "rate"))
            ),
        )
        .filter(pl.col("_row").is_not_null())  # anchors only date the first incoming row
        .sort("_row")
    )
    return checked.drop("_row", "_low", "_high")


def add_ltv_checks(ltv: pl.DataFrame) -> pl.DataFrame:
    """Return LTV rows with consistency check columns (grain: loan x as-of date, order kept).

    Check columns: `ltv_relative_error`, `expected_status`, `margin_call_price_relative_error`,
    `liquidation_price_relative_error` (null for multi-symbol collateral).
    """
    implied = pl.col("loan_balance") / pl.col("collateral_value")
    expected = (
        pl.when(pl.col("ltv") >= pl.col("liquidation_ltv"))
        .then(pl.lit("liquidation"))
        .when(pl.col("ltv") >= pl.col("margin_call_ltv"))
        .then(pl.lit("margin_call"))
        .when(pl.col("ltv") >= pl.col("warning_ltv"))
        .then(pl.lit("warning"))
        .otherwise(pl.lit("ok"))
    )

    def trigger_error(price_col: str, level_col: str) -> pl.Expr:
        # trigger / price = ltv / level for single-symbol collateral
        target = pl.col("ltv") / pl.col(level_col)
        return ((pl.col(price_col) / pl.col("price")) / target - 1).abs()

    return ltv.with_columns(
        ltv_relative_error=((pl.col("ltv") - implied) / implied).abs(),
        expected_status=expected,
        margin_call_price_relative_error=trigger_error("margin_call_price", "margin_call_ltv"),
        liquidation_price_relative_error=trigger_error("liquidation_price", "liquidation_ltv"),
    )


def previous_bars(history: pl.DataFrame, incoming: pl.DataFrame) -> pl.DataFrame:
    """Return each symbol's last two staged bars before its first incoming bar (grain: symbol x date).

    Two, so the first incoming bar can be judged as a reversion of a spike just before it.
    """
    firsts = incoming.group_by("symbol").agg(_first=pl.col("session_date").min())
    return (
        history.join(firsts, on="symbol")
        .filter(pl.col("session_date") < pl.col("_first"))
        .sort("session_date")
        .group_by("symbol")
        .agg(pl.col("session_date").tail(2), pl.col("close").tail(2))
        .explode("session_date", "close")
    )


def apply_verdict(
    incoming: pl.DataFrame, reasons: pl.DataFrame, key: str
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Split incoming rows into (accepted, quarantined, blocked keys) by the failing-row reasons, order kept.

    Every row of a `key` (symbol or pair) with a blocking failure is held back, so nothing
    is published for it; the failing rows themselves go to quarantine with their reasons.
    Accepted rows carry `warnings`, the names of the warning checks they failed.
    """
    tagged = incoming.with_row_index("_row").join(reasons, on="_row", how="left", maintain_order="left")
    blocked = tagged.filter(pl.col("is_blocked").fill_null(False))[key].unique().sort().to_list()
    quarantined = tagged.filter(pl.col("is_blocked").fill_null(False)).drop("_row", "is_blocked")
    accepted = tagged.filter(~pl.col(key).is_in(blocked)).rename({"reasons": "warnings"}).drop("_row", "is_blocked")
    return accepted, quarantined, blocked
