"""Daily loan-to-value for every loan and session in one vectorised pass."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from transforms.staging import fx_symbol

LOAN_SCHEMA: dict[str, pl.DataType] = {
    "loan_id": pl.String(),
    "currency": pl.String(),
    "principal": pl.Float64(),
    "annual_rate": pl.Float64(),
    "accrual_start": pl.Date(),
    "valuation_window": pl.Int32(),
    "cure_period_days": pl.Int32(),
    "warning": pl.Float64(),
    "margin_call": pl.Float64(),
    "liquidation": pl.Float64(),
    "cure_target": pl.Float64(),
}

COLLATERAL_SCHEMA: dict[str, pl.DataType] = {
    "loan_id": pl.String(),
    "symbol": pl.String(),
    "symbol_currency": pl.String(),
    "shares": pl.Float64(),
    "haircut": pl.Float64(),
    "shares_as_of": pl.Date(),  # the date the share count is stated at
}

LTV_SCHEMA: dict[str, pl.DataType] = {
    "loan_id": pl.String(),
    "as_of_date": pl.Date(),
    "price_date": pl.Date(),
    "fx_date": pl.Date(),
    "currency": pl.String(),
    "collateral_value": pl.Float64(),
    "loan_balance": pl.Float64(),
    "ltv": pl.Float64(),
    "status": pl.String(),
    "price": pl.Float64(),
    "fx": pl.Float64(),
    "margin_call_price": pl.Float64(),
    "liquidation_price": pl.Float64(),
    "distance_to_margin_call": pl.Float64(),
    "cure_cash": pl.Float64(),
    "cure_shares": pl.Float64(),
    "sessions_since_price": pl.Int32(),
    "is_stale": pl.Boolean(),
    "is_unconfirmed": pl.Boolean(),
    "warning_ltv": pl.Float64(),
    "margin_call_ltv": pl.Float64(),
    "liquidation_ltv": pl.Float64(),
    "cure_target_ltv": pl.Float64(),
    "source": pl.String(),
}


def level_expr(ltv: pl.Expr) -> pl.Expr:
    """Return the level `ltv` stands at against the frame's `warning`, `margin_call` and `liquidation` columns."""
    return (
        pl.when(ltv >= pl.col("liquidation"))
        .then(pl.lit("liquidation"))
        .when(ltv >= pl.col("margin_call"))
        .then(pl.lit("margin_call"))
        .when(ltv >= pl.col("warning"))
        .then(pl.lit("warning"))
        .otherwise(pl.lit("ok"))
    )


def adjust_shares_for_splits(collateral: pl.DataFrame, splits: pl.DataFrame) -> pl.DataFrame:
    """Return pledged lines with share counts in the basis of the latest split (grain: loan x symbol).

    Yahoo restates a symbol's whole price history in the basis of its latest split, so a line's
    shares, stated as of `shares_as_of`, are multiplied by every split ratio after that date.
    `splits` holds (symbol, session_date, stock_splits) with the ratio, e.g. 2.0 for 2-for-1.
    """
    events = splits.filter(pl.col("stock_splits") > 0).select("symbol", "session_date", "stock_splits").unique()
    factors = (
        collateral.select("loan_id", "symbol", "shares_as_of")
        .join(events, on="symbol")
        .filter(pl.col("shares_as_of").is_null() | (pl.col("session_date") > pl.col("shares_as_of")))
        .group_by("loan_id", "symbol")
        .agg(_factor=pl.col("stock_splits").product())
    )
    return (
        collateral.join(factors, on=["loan_id", "symbol"], how="left", maintain_order="left")  # the book's line order
        .with_columns(shares=pl.col("shares") * pl.col("_factor").fill_null(1.0))
        .drop("_factor")
    )


# The staged columns that value a line; a large run keeps only these in memory.
VALUED_PRICE_COLUMNS = ["symbol", "session_date", "close", "source", "is_unconfirmed"]


def add_windowed_prices(prices: pl.LazyFrame, windows: list[int]) -> pl.LazyFrame:
    """Return the mean close of each symbol's last `window` bars (grain: symbol x window x date).

    `is_unconfirmed` is the flag of the bar on that date (a large unexplained move).
    """
    if "is_unconfirmed" not in prices.collect_schema().names():
        prices = prices.with_columns(is_unconfirmed=pl.lit(False))
    ordered = prices.select(VALUED_PRICE_COLUMNS).sort("symbol", "session_date")
    return pl.concat(
        [
            ordered.with_columns(
                valuation_window=pl.lit(window, pl.Int32),
                # A weighted sum adds each window afresh; a plain rolling mean carries a running sum
                # whose last bits depend on where the series starts, so split runs would disagree.
                price=(
                    pl.col("close").rolling_sum(window, weights=[1.0] * window, min_samples=1)
                    / (pl.int_range(pl.len()).clip(upper_bound=window - 1) + 1)
                ).over("symbol"),
            )
            for window in sorted(set(windows))
        ]
    ).drop("close")


def add_session_lag(frame: pl.LazyFrame, sessions: pl.Series, date_col: str, lag_col: str) -> pl.LazyFrame:
    """Return `frame` with the number of sessions from `date_col` up to `as_of_date`.

    `sessions` is the sorted session calendar; a date off it counts from the session before it,
    and a date before the calendar (or none) has no lag. A sorted search, not a join: no row moves.
    """
    calendar = pl.lit(sessions.rename("_calendar"))
    position = calendar.search_sorted(pl.col(date_col), side="right").cast(pl.Int32) - 1
    as_of = calendar.search_sorted(pl.col("as_of_date"), side="right").cast(pl.Int32) - 1
    lag = pl.when(pl.col(date_col).is_not_null() & (position >= 0)).then(as_of - position)
    return frame.with_columns(lag.cast(pl.Int32).alias(lag_col))


GRID_KEYS = 1_000  # (symbol, valuation window) keys of the price grid built at once


@dataclass(frozen=True)
class PriceGrid:
    """Every price and FX rate a book's lines need, on every as-of date, for lines to gather by position.

    Built once per run and shared by every partition of loans: row `k * n + d` of `prices` is
    (symbol, valuation window) key `k` on as-of date `d` of `as_of_dates` (n of them), and row
    `p * n + d` of `rates` is FX pair `p` on that date. A line-day looks its price up by arithmetic,
    not by a join or a sort per partition.
    """

    as_of_dates: pl.Series
    price_keys: pl.DataFrame  # symbol, valuation_window, _key
    prices: pl.DataFrame  # price_date, price, source, is_unconfirmed, _price_lag
    pair_keys: pl.DataFrame  # pair, _pair
    rates: pl.DataFrame  # fx_date, fx, _fx_lag
    sources: list[str]  # every source a price in the grid comes from

    @property
    def sessions(self) -> int:
        return len(self.as_of_dates)


def _line_keys(loans: pl.DataFrame, collateral: pl.DataFrame) -> pl.DataFrame:
    """Return each pledged line with its loan's currency, valuation window and FX pair (null: same currency)."""
    return collateral.join(
        loans.select("loan_id", "currency", "valuation_window"), on="loan_id", maintain_order="left"
    ).with_columns(
        pair=pl.when(pl.col("symbol_currency") != pl.col("currency"))
        .then(pl.col("symbol_currency") + pl.col("currency"))
        .otherwise(None)
    )


def _dense(keys: pl.DataFrame, as_of_dates: pl.Series) -> pl.DataFrame:
    """Return `keys` x `as_of_dates`, key-major and date-minor, so row k * n + d is key k on date d."""
    n = len(as_of_dates)
    grid = keys.with_columns(_d=pl.int_ranges(0, n, dtype=pl.Int32)).explode("_d")
    return grid.with_columns(as_of_date=as_of_dates.gather(grid["_d"])).drop("_d")


def build_price_grid(
    loans: pl.DataFrame,
    collateral: pl.DataFrame,
    as_of_dates: pl.Series,
    prices: pl.LazyFrame,
    fx_rates: pl.LazyFrame,
    sessions: pl.Series,
) -> PriceGrid:
    """Return the windowed price and FX rate of every key the lines need on every as-of date.

    A price is the last bar on or before the as-of date (`price_date`), with the sessions since it;
    likewise each FX rate (`fx_date`).
    """
    dates = as_of_dates.unique().sort().rename("as_of_date")
    lines = _line_keys(loans, collateral)
    price_keys = lines.select("symbol", "valuation_window").unique().sort("symbol", "valuation_window")
    price_keys = price_keys.with_row_index("_key")
    # Built GRID_KEYS keys at a time: a whole book's windowed bars and dense key-days at once took
    # several times the finished grid's memory. Keys in order, so row k * n + d stays key k's.
    chunks = list(price_keys.iter_slices(GRID_KEYS)) or [price_keys]
    grid = pl.concat([_priced_keys(chunk, dates, prices, sessions).collect() for chunk in chunks])
    pair_keys = lines.select("pair").drop_nulls().unique().sort("pair").with_row_index("_pair")
    rates = fx_rates.select("pair", pl.col("session_date").alias("fx_date"), pl.col("rate").alias("fx"))
    converted = (
        _dense(pair_keys, dates)
        .lazy()
        .join_asof(
            rates.sort("fx_date"),
            left_on="as_of_date",
            right_on="fx_date",
            by="pair",
            strategy="backward",
            check_sortedness=False,
        )
    )
    converted = add_session_lag(converted, sessions, "fx_date", "_fx_lag")
    rates_grid = converted.select("fx_date", "fx", "_fx_lag").collect()
    sources = grid["source"].drop_nulls().unique().sort().to_list()
    return PriceGrid(dates, price_keys, grid, pair_keys, rates_grid, sources)


def _priced_keys(keys: pl.DataFrame, dates: pl.Series, prices: pl.LazyFrame, sessions: pl.Series) -> pl.LazyFrame:
    """Return the grid rows of `keys` (symbol, valuation window), key-major and date-minor."""
    windows = keys["valuation_window"].unique().sort().to_list() or [1]
    symbols = prices.filter(pl.col("symbol").is_in(keys["symbol"].unique().implode()))
    keyed = add_windowed_prices(symbols, windows).join(
        keys.lazy().select("symbol", "valuation_window", "_key"), on=["symbol", "valuation_window"]
    )
    bars = keyed.select(
        _at_bar=_key_day("_key", "session_date"),
        _bar_key="_key",
        price_date="session_date",
        price="price",
        source="source",
        is_unconfirmed="is_unconfirmed",
    ).sort("_at_bar")
    found = ("price_date", "price", "source", "is_unconfirmed")  # what a grid row takes from its bar
    # One as-of join on (key, day) as a single number, rather than one by symbol and window: the
    # match is the key's last bar on or before the as-of date, or an earlier key's when it has none.
    matched = (
        _dense(keys, dates)
        .lazy()
        .with_columns(_at=_key_day("_key", "as_of_date"))
        .join_asof(
            bars,
            left_on="_at",
            right_on="_at_bar",
            strategy="backward",
            check_sortedness=False,  # both ascend: keys in order, dates in order within a key
        )
    )
    same_key = pl.col("_bar_key") == pl.col("_key")
    priced = matched.with_columns([pl.when(same_key).then(pl.col(name)).alias(name) for name in found])
    return add_session_lag(priced, sessions, "price_date", "_price_lag").select(*found, "_price_lag")


def _key_day(key: str, day: str) -> pl.Expr:
    """Return (key, day) as one number that sorts as the pair does (a key below 2**31, any date)."""
    return pl.col(key).cast(pl.Int64) * 2**32 + pl.col(day).to_physical().cast(pl.Int64) + 2**31


def _numbered(loans: pl.DataFrame) -> pl.DataFrame:
    """Return the loans in loan id order, each with its number `_loan` (its row)."""
    return loans.sort("loan_id", maintain_order=True).with_row_index("_loan")


def value_lines_on_grid(loans: pl.DataFrame, collateral: pl.DataFrame, grid: PriceGrid) -> pl.DataFrame:
    """Return each pledged line valued on each as-of date of the grid (grain: loan x symbol x as-of date).

    Rows are line-major in the book's line order, so a loan's lines on a date stay in that order.
    `_group` is the loan's number (in loan id order) times the grid's sessions plus the as-of date's
    position: it orders rows by loan and date, and groups them by one number rather than by text and date.
    A price's `source` is there only when the grid's prices come from more than one.
    """
    n = grid.sessions
    lines = (
        _line_keys(loans, collateral)
        .join(grid.price_keys, on=["symbol", "valuation_window"], how="left", maintain_order="left")
        .join(grid.pair_keys, on="pair", how="left", maintain_order="left")
        .join(_numbered(loans).select("loan_id", "_loan"), on="loan_id", how="left", maintain_order="left")
        .with_columns(_d=pl.int_ranges(0, n, dtype=pl.Int64))
        .explode("_d")
    )
    at_price = lines["_key"].cast(pl.Int64) * n + lines["_d"]
    at_rate = lines["_pair"].cast(pl.Int64) * n + lines["_d"]  # null for a line in the loan's currency
    single_source = ["source"] if len(grid.sources) == 1 else []
    valued = pl.concat(
        [
            lines.select("loan_id", "symbol", "pair", "shares", "haircut").with_columns(
                as_of_date=grid.as_of_dates.gather(lines["_d"]),
                _group=lines["_loan"].cast(pl.Int64) * n + lines["_d"],
            ),
            # A price's source is gathered only when there is more than one to tell apart.
            grid.prices.select(pl.exclude(single_source).gather(at_price)),
            grid.rates.select(pl.all().gather(at_rate)),
        ],
        how="horizontal",
    )
    return (
        valued.with_columns(fx=pl.when(pl.col("pair").is_null()).then(1.0).otherwise(pl.col("fx")))
        .with_columns(
            unit_value=pl.col("shares") * (1 - pl.col("haircut")) * pl.col("fx"),
        )
        .with_columns(line_value=pl.col("unit_value") * pl.col("price"))
    )


def value_collateral_lines(
    loans: pl.LazyFrame,
    collateral: pl.LazyFrame,
    as_of_dates: pl.LazyFrame,
    prices: pl.LazyFrame,
    fx_rates: pl.LazyFrame,
) -> pl.LazyFrame:
    """Return each pledged line priced on each as-of date (grain: loan x symbol x as-of date)."""
    loans_now, lines_now = loans.collect(), collateral.collect()
    dates = as_of_dates.select("as_of_date").collect().to_series()
    sessions = dates.unique().sort()  # lags are not wanted here: counted over the asked dates alone
    grid = build_price_grid(loans_now, lines_now, dates, prices, fx_rates, sessions)
    return value_lines_on_grid(loans_now, lines_now, grid).lazy()


def aggregate_collateral(lines: pl.LazyFrame, stale_after: int, sources: list[str]) -> pl.LazyFrame:
    """Return collateral value per `_group` (a loan on an as-of date), dropping dates a line has no price for.

    `sources` are all the sources the lines' prices come from (the grid's): with one, every row
    names it, without the costly per-group join of distinct names (and the lines carry no `source`).
    """
    source = pl.lit(sources[0]) if len(sources) == 1 else pl.col("source").unique().sort().str.join("+")
    single = pl.len() == 1
    return (
        lines.group_by("_group")
        .agg(
            # Summed in the book's line order, whatever threads and chunks the group-by uses, so a
            # loan's value is the same to the last bit in a daily run and in a backfill.
            collateral_value=pl.col("line_value").implode().list.sum(),
            _unpriced=pl.col("line_value").is_null().sum(),
            price_date=pl.col("price_date").min(),
            fx_date=pl.col("fx_date").min(),
            sessions_since_price=pl.max_horizontal(pl.col("_price_lag").max(), pl.col("_fx_lag").max()),
            price=pl.when(single).then(pl.col("price").first()),
            fx=pl.when(single).then(pl.col("fx").first()),
            _unit_value=pl.when(single).then(pl.col("unit_value").first()),
            _share_value=pl.when(single).then((pl.col("line_value") / pl.col("shares")).first()),
            source=source,
            is_unconfirmed=pl.col("is_unconfirmed").fill_null(False).any(),
        )
        .filter(pl.col("_unpriced") == 0)
        .with_columns(is_stale=pl.col("sessions_since_price") > stale_after)
        .drop("_unpriced")
    )


def compute_loan_ltv(
    loans: pl.LazyFrame,
    collateral: pl.LazyFrame,
    sessions: pl.LazyFrame,
    as_of_dates: pl.LazyFrame,
    prices: pl.LazyFrame,
    fx_rates: pl.LazyFrame,
    stale_after: int = 3,
) -> pl.LazyFrame:
    """Return LTV, level, trigger prices and cure amounts (grain: loan x as-of date)."""
    loans_now, lines_now = loans.collect(), collateral.collect()
    calendar = sessions.select("session_date").collect().to_series()
    dates = as_of_dates.select("as_of_date").collect().to_series()
    grid = build_price_grid(loans_now, lines_now, dates, prices, fx_rates, calendar)
    return ltv_on_grid(loans_now, lines_now, grid, stale_after).lazy()


def ltv_on_grid(loans: pl.DataFrame, collateral: pl.DataFrame, grid: PriceGrid, stale_after: int) -> pl.DataFrame:
    """Return LTV, level, trigger prices and cure amounts of `loans` from a shared grid (grain: loan x as-of date)."""
    lines = value_lines_on_grid(loans, collateral, grid).lazy()
    aggregated = aggregate_collateral(lines, stale_after, grid.sources).sort("_group")  # by loan and date
    # Each row's loan and date from its group number, the loan's terms joined within the lazy query.
    # Joined eagerly, a one-loan partition's terms came back as broadcast values, which Polars divides
    # by through their reciprocal: the last bits would depend on the partition.
    group = pl.col("_group")
    valued = aggregated.with_columns(
        _loan=(group // grid.sessions).cast(pl.UInt32),
        as_of_date=pl.lit(grid.as_of_dates).gather(group % grid.sessions),
    ).join(_numbered(loans).lazy(), on="_loan", how="left", maintain_order="left")
    days = (pl.col("as_of_date") - pl.col("accrual_start")).dt.total_days().clip(lower_bound=0)
    # Times the constant 1/360, not divided by 360: Polars divides a column by a scalar through its
    # reciprocal on longer columns only, so a one-day run and a backfill would round differently.
    balance = pl.col("principal") * (1 + pl.col("annual_rate") * days.cast(pl.Float64) * (1 / 360))
    return (
        valued.with_columns(loan_balance=balance)
        .with_columns(ltv=pl.col("loan_balance") / pl.col("collateral_value"))
        .with_columns(
            status=level_expr(pl.col("ltv")),
            margin_call_price=pl.col("loan_balance") / (pl.col("_unit_value") * pl.col("margin_call")),
            liquidation_price=pl.col("loan_balance") / (pl.col("_unit_value") * pl.col("liquidation")),
            distance_to_margin_call=1 - pl.col("ltv") / pl.col("margin_call"),
            cure_cash=(pl.col("loan_balance") - pl.col("cure_target") * pl.col("collateral_value")).clip(lower_bound=0),
            cure_shares=(
                (pl.col("loan_balance") / pl.col("cure_target") - pl.col("collateral_value")) / pl.col("_share_value")
            ).clip(lower_bound=0),
            warning_ltv=pl.col("warning"),
            margin_call_ltv=pl.col("margin_call"),
            liquidation_ltv=pl.col("liquidation"),
            cure_target_ltv=pl.col("cure_target"),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in LTV_SCHEMA.items()])
        .collect()
    )


def required_fx_symbols(collateral: pl.DataFrame, loans: pl.DataFrame) -> list[str]:
    """Return the Yahoo FX symbols needed to convert every line into its loan's currency."""
    pairs = (
        collateral.join(loans.select("loan_id", "currency"), on="loan_id")
        .filter(pl.col("symbol_currency") != pl.col("currency"))
        .select("symbol_currency", "currency")
        .unique()
        .rows()
    )
    return sorted(fx_symbol(base, quote) for base, quote in pairs)
