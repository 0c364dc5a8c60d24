"""The coarse stages of a run, one Prefect task each; only fetching retries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import polars as pl
from prefect import task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.utilities.annotations import quote

from flows.plan import RunPlan
from flows.progress import report
from marginwatch import calendar
from marginwatch.errors import SourceUnavailable
from marginwatch.faults import crash_point
from marginwatch.sources.base import RAW_BAR_SCHEMA, MarketSource
from transforms.ltv import PriceGrid, build_price_grid, ltv_on_grid
from transforms.quality import add_bar_checks, add_fx_checks, add_ltv_checks, apply_verdict, previous_bars
from transforms.risk import RiskModel, collateral_values, compute_loan_risk
from transforms.staging import (
    FX_SCHEMA,
    PRICE_SCHEMA,
    deduplicate_bars,
    fx_pair_expr,
    stage_fx_rates,
    stage_prices,
)
from transforms.stress import stress_loans
from warehouse.connection import open_writer
from warehouse.load import (
    RunOutput,
    RunRecord,
    publish_run,
    read_fx_history,
    read_price_history,
    read_split_events,
)


def as_is(value: T) -> T:
    """Mark a task argument for Prefect to pass through untouched.

    Prefect walks every argument looking for futures to wait on; through a 10,000-loan book that
    walk alone costs seconds per task. Our arguments never hold futures.
    """
    return cast(T, quote(value))


def release(*values: Any) -> None:
    """Let go of task results Prefect keeps for lineage, so a partition's rows are freed once set aside.

    A flow run remembers every task result (and the items of a returned tuple) to link later tasks
    to it; across a whole book's partitions that pins every LTV frame in memory until the run ends.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None:
        return
    for value in values:
        for item in (value, *(value if isinstance(value, tuple) else ())):
            context.run_results.pop(id(item), None)


def let_go(future: PrefectFuture[Any]) -> None:
    """Drop a finished task future's hold on its result, once the result is taken.

    Prefect's future and the task runner's future refer to each other, so a finished one is freed
    only by a full garbage collection, which a run of polars work, allocating few Python objects,
    seldom triggers: each future kept its partition's million LTV rows (190 MB) until the run ended.
    """
    future.state.data = None


@dataclass(frozen=True)
class Verdict:
    """What the incoming-data gate let through, held back and found."""

    stocks: pl.DataFrame  # accepted stock bars, with `warnings`
    fx: pl.DataFrame  # accepted FX bars, with `warnings` and check columns
    quarantined: pl.DataFrame  # raw bars with `reasons`
    results: pl.DataFrame  # one row per expectation and suite
    blocked_symbols: list[str]
    blocked_pairs: list[str]
    table_blocked: bool = False  # a blocking bar check failed naming no rows: every symbol is held back


def _retry_when_transient(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except SourceUnavailable as exc:
        return exc.transient
    except Exception:
        return False
    return False


PARTITION_LOAN_DAYS = 1_000_000  # LTV rows per partition: the next computes while the flow checks one
T = TypeVar("T")
GATE_ROWS = 1_000_000  # bars checked and staged at once: a whole book's bars go through the gate in batches
LTV_GATE_ROWS = 1_000_000  # LTV rows GX checks at once (its pandas engine holds several copies of a part)
FETCH_BATCH = 100  # symbols per fetch task: a 2,000-symbol book is 20 tasks, not 2,000
IS_FX = pl.col("symbol").str.ends_with("=X")  # a Yahoo FX symbol (JPY=X, EURUSD=X), not a stock


@task(
    name="fetch-batch",
    retries=2,
    retry_delay_seconds=[2, 5],
    retry_condition_fn=_retry_when_transient,
    cache_policy=NO_CACHE,
)
def fetch_batch(source: MarketSource, symbols: list[str], start: dt.date, end: dt.date) -> pl.DataFrame:
    """Return one batch of symbols' bars in [start, end] (grain: symbol x session date)."""
    return source.fetch_bars(symbols, start, end)


def fetch_bars(source: MarketSource, symbols: list[str], start: dt.date, end: dt.date) -> pl.DataFrame:
    """Return every symbol's bars, one task per batch of symbols on the flow's task runner (grain: symbol x date).

    A source that computes its bars in this process says so with `batch_symbols = None`: it is
    asked once for every symbol, as threads would only take turns at the interpreter lock.
    """
    size = getattr(source, "batch_symbols", FETCH_BATCH) or max(len(symbols), 1)
    batches = [symbols[i : i + size] for i in range(0, len(symbols), size)]
    futures = fetch_batch.map(unmapped(source), batches, unmapped(start), unmapped(end))
    frames, done = [], 0
    for batch, future in zip(batches, futures, strict=True):
        frames.append(future.result())
        let_go(future)
        done += len(batch)
        report("fetch", done, len(symbols))
    return pl.concat(frames) if frames else pl.DataFrame(schema=RAW_BAR_SCHEMA)


@task(name="read-history", cache_policy=NO_CACHE)
def read_history(
    warehouse: Path, timeout: float, symbols: list[str], pairs: list[str], since: dt.date, until: dt.date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return staged prices and FX rates already in the warehouse for the run's window."""
    if not warehouse.exists():
        return pl.DataFrame(schema=PRICE_SCHEMA), pl.DataFrame(schema=FX_SCHEMA)
    with open_writer(warehouse, timeout) as con:
        return read_price_history(con, symbols, since, until), read_fx_history(con, pairs, since, until)


SPLIT_STATE_SCHEMA = {
    "symbol": pl.String(),
    "session_date": pl.Date(),
    "stock_splits": pl.Float64(),
    "first_staged": pl.Date(),
}


@task(name="read-split-state", cache_policy=NO_CACHE)
def read_split_state(warehouse: Path, timeout: float, symbols: list[str]) -> pl.DataFrame:
    """Return the splits already staged for the symbols, and each symbol's first staged date."""
    if not warehouse.exists():
        return pl.DataFrame(schema=SPLIT_STATE_SCHEMA)
    with open_writer(warehouse, timeout) as con:
        return read_split_events(con, symbols).select([pl.col(n).cast(t) for n, t in SPLIT_STATE_SCHEMA.items()])


@task(name="validate-incoming", cache_policy=NO_CACHE)
def validate_incoming(
    raw: pl.DataFrame,
    history: pl.DataFrame,
    expected_newest: dt.date,
    move_bound: float,
    run_id: str,
    fx_history: pl.DataFrame | None = None,
) -> Verdict:
    """Run the bar and FX suites on the incoming batch and split it into accepted and quarantined."""
    from expectations.gate import validate_in_parts
    from expectations.suites import BARS, FX_RATES

    stocks, fx = raw.filter(~IS_FX), raw.filter(IS_FX)
    sessions = calendar.sessions_between(calendar.FIRST_DAY, calendar.LAST_DAY)
    checked_stocks = add_bar_checks(stocks, previous_bars(history, stocks), sessions, expected_newest, move_bound)
    base, quote = fx_pair_expr(pl.col("symbol"))
    checked_fx = add_fx_checks(fx.with_columns(pair=base + quote, rate=pl.col("close")), fx_history)
    bar_outcome = validate_in_parts(BARS, checked_stocks, run_id, "symbol", GATE_ROWS)
    fx_outcome = validate_in_parts(FX_RATES, checked_fx, run_id, "pair", GATE_ROWS)
    stocks_ok, stocks_held, blocked_symbols = apply_verdict(checked_stocks, bar_outcome.row_reasons, "symbol")
    fx_ok, fx_held, blocked_pairs = apply_verdict(checked_fx, fx_outcome.row_reasons, "pair")
    if bar_outcome.table_blocked:
        blocked_symbols = sorted(stocks["symbol"].unique().to_list())
    if fx_outcome.table_blocked:
        blocked_pairs = sorted(checked_fx["pair"].unique().to_list())
    quarantined = pl.concat(
        [frame.select([*raw.columns, "reasons"]) for frame in (stocks_held, fx_held)], how="vertical_relaxed"
    )
    report("validate", 1, 1)
    return Verdict(
        stocks_ok.filter(~pl.col("symbol").is_in(blocked_symbols)),
        fx_ok.filter(~pl.col("pair").is_in(blocked_pairs)),
        quarantined,
        pl.concat([bar_outcome.results, fx_outcome.results]),
        blocked_symbols,
        blocked_pairs,
        bar_outcome.table_blocked,
    )


@task(name="stage-bars", cache_policy=NO_CACHE)
def stage_bars(verdict: Verdict) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the accepted bars as staging rows: (prices, FX rates), deduplicated and typed.

    A bar with an unexplained large move is staged but flagged `is_unconfirmed`; FX rows
    dated on a weekend stay in raw only (the rule the README documents).
    """
    stocks = verdict.stocks
    fx = verdict.fx.filter(pl.col("is_weekday"))
    prices = stage_prices(
        deduplicate_bars(stocks.select([*RAW_BAR_SCHEMA, "source", "run_id", "fetched_at", "is_unconfirmed"]).lazy())
    )
    rates = stage_fx_rates(deduplicate_bars(fx.select([*RAW_BAR_SCHEMA, "source", "run_id", "fetched_at"]).lazy()))
    staged = pl.collect_all([prices, rates])
    report("stage", 1, 1)
    return staged[0], staged[1]


def gate_and_stage(
    raw: pl.DataFrame,
    history: tuple[pl.DataFrame, pl.DataFrame],
    expected_newest: dt.date,
    move_bound: float,
    run_id: str,
) -> tuple[Verdict, tuple[pl.DataFrame, pl.DataFrame]]:
    """Gate and stage the incoming bars a batch of whole symbols (about GATE_ROWS bars) at a time.

    A whole book's backfill brings millions of bars, and checking and staging them at once held
    several copies of all of them. Every check but a table-wide one looks at one symbol's (or one
    pair's) rows, so batches give the same verdict; a table-wide failure in any batch still holds
    back every symbol. Returns the merged verdict (its accepted bars already staged, so left empty)
    and the staged (prices, FX rates).
    """
    from expectations.gate import merge_results

    verdicts, prices, rates = [], [], []
    for batch in _symbol_batches(raw, GATE_ROWS):
        verdict = validate_incoming(batch, history[0], expected_newest, move_bound, run_id, history[1])
        crash_point("run:validated")
        staged = stage_bars(as_is(verdict))
        release(verdict, staged)
        verdicts.append(replace(verdict, stocks=verdict.stocks.clear(), fx=verdict.fx.clear()))
        prices.append(staged[0])
        rates.append(staged[1])
        del verdict, staged, batch
    table_blocked = any(verdict.table_blocked for verdict in verdicts)
    blocked_symbols = sorted({symbol for verdict in verdicts for symbol in verdict.blocked_symbols})
    if table_blocked:
        blocked_symbols = sorted(raw.filter(~IS_FX)["symbol"].unique().to_list())
    merged = Verdict(
        verdicts[0].stocks,
        verdicts[0].fx,
        pl.concat([verdict.quarantined for verdict in verdicts], how="vertical_relaxed"),
        merge_results([verdict.results for verdict in verdicts]),
        blocked_symbols,
        sorted({pair for verdict in verdicts for pair in verdict.blocked_pairs}),
        table_blocked,
    )
    staged_prices = pl.concat(prices).filter(~pl.col("symbol").is_in(blocked_symbols))
    return merged, (staged_prices, pl.concat(rates))


def _symbol_batches(raw: pl.DataFrame, most_rows: int) -> Iterator[pl.DataFrame]:
    """Yield batches of whole symbols' bars of about `most_rows` rows, every FX bar in the first.

    FX bars stay together because two Yahoo symbols can quote one pair (JPY=X and USDJPY=X), and
    staging keeps one rate per pair and day.
    """
    sizes = raw.filter(~IS_FX).group_by("symbol").len().sort("symbol") if raw.height > most_rows else None
    if sizes is None or not sizes.height:
        yield raw
        return
    groups = (
        sizes.with_columns(batch=(pl.col("len").cum_sum() - 1) // most_rows)
        .group_by("batch", maintain_order=True)
        .agg("symbol")["symbol"]
        .to_list()
    )
    yield pl.concat([raw.filter(IS_FX), raw.filter(pl.col("symbol").is_in(groups[0]))])
    for symbols in groups[1:]:  # one batch's copy at a time
        yield raw.filter(pl.col("symbol").is_in(symbols))


def _newest(history: pl.DataFrame, incoming: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Return history with rows replaced by incoming ones on the same keys (in the incoming rows' columns)."""
    return pl.concat([history.join(incoming.select(keys), on=keys, how="anti").select(incoming.columns), incoming])


@task(name="price-grid", cache_policy=NO_CACHE)
def price_grid(
    loans: pl.DataFrame,
    collateral: pl.DataFrame,
    prices: pl.DataFrame,
    fx_rates: pl.DataFrame,
    as_of_start: dt.date,
    as_of_end: dt.date,
) -> PriceGrid:
    """Return the price and FX rate every line needs on every session in [as_of_start, as_of_end], once per run."""
    sessions = calendar.sessions_between(calendar.FIRST_DAY, as_of_end)
    as_of_dates = calendar.sessions_between(as_of_start, as_of_end)
    return build_price_grid(loans, collateral, as_of_dates, prices.lazy(), fx_rates.lazy(), sessions)


@task(name="compute-ltv-partition", cache_policy=NO_CACHE)
def compute_ltv_partition(
    loans: pl.DataFrame, collateral: pl.DataFrame, grid: PriceGrid, stale_after: int
) -> pl.DataFrame:
    """Return LTV rows for one partition of loans over every session of the run's price grid."""
    return ltv_on_grid(loans, collateral, grid, stale_after)


def partition_size(sessions: int, most_loans: int) -> int:
    """Return how many loans one LTV partition takes: about PARTITION_LOAN_DAYS loan-days, at most `most_loans`."""
    return max(1, min(most_loans, PARTITION_LOAN_DAYS // max(sessions, 1)))


def compute_ltv(
    loans: pl.DataFrame,
    collateral: pl.DataFrame,
    history: tuple[pl.DataFrame, pl.DataFrame],
    staged: tuple[pl.DataFrame, pl.DataFrame],
    plan: RunPlan,
    stale_after: int,
    partition_loans: int,
    at_once: int = 1,
) -> Generator[tuple[list[str], pl.DataFrame], None, None]:
    """Yield (loan ids, LTV rows) per partition of loans, computed a wave of tasks at a time (grain: loan x date).

    Waves of `at_once` partitions run on the flow's task runner, one wave ahead of the caller: once a
    wave is computed the next one starts, and the caller checks and sets aside the first while it
    runs. GX's checks are Python on one core while Polars computes on every core, so the two overlap;
    memory holds the wave being checked and the one computing, not the whole book.
    """
    prices = _newest(history[0], staged[0], ["symbol", "session_date"])
    fx_rates = _newest(history[1], staged[1], ["pair", "session_date"])
    grid = price_grid(as_is(loans), as_is(collateral), as_is(prices), as_is(fx_rates), plan.as_of_start, plan.as_of_end)
    del prices, fx_rates  # the grid holds what the lines need
    parts = [loans.slice(i, partition_loans) for i in range(0, max(loans.height, 1), partition_loans)]
    waves = [parts[first : first + at_once] for first in range(0, len(parts), at_once)]

    def start(wave: list[pl.DataFrame]) -> list[Any]:
        lines = [collateral.filter(pl.col("loan_id").is_in(part["loan_id"].implode())) for part in wave]
        return list(compute_ltv_partition.map(wave, lines, unmapped(grid), unmapped(stale_after)))

    futures = start(waves[0])
    try:
        for index, wave in enumerate(waves):
            computed = []
            for future in futures:
                computed.append(future.result())
                let_go(future)
            futures = start(waves[index + 1]) if index + 1 < len(waves) else []
            report("compute", min((index + 1) * at_once, len(parts)), len(parts))
            for part in wave:
                yield part["loan_id"].to_list(), computed.pop(0)
    finally:  # a run that stops early (a failed check, a refused write) lets the wave it started end and go
        for future in futures:
            future.wait()
            let_go(future)
        release(grid)


@task(name="compute-risk", cache_policy=NO_CACHE)
def compute_risk(
    loans: pl.DataFrame,
    collateral: pl.DataFrame,
    history: tuple[pl.DataFrame, pl.DataFrame],
    staged: tuple[pl.DataFrame, pl.DataFrame],
    ltv: pl.DataFrame,
    model: RiskModel,
    price_shocks: list[float],
    fx_shocks: list[float],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (stress rows, risk rows) for every published LTV row (grains: loan x date x scenario, x method)."""
    prices = _newest(history[0], staged[0], ["symbol", "session_date"])
    fx_rates = _newest(history[1], staged[1], ["pair", "session_date"])
    first, last = ltv["as_of_date"].min(), ltv["as_of_date"].max()
    start = calendar.sessions_back(first, model.lookback_sessions)  # type: ignore[arg-type]
    sessions = calendar.sessions_between(start, last).to_list()  # type: ignore[arg-type]
    values = collateral_values(loans, collateral, sessions, prices, fx_rates)
    foreign = values.select(
        "loan_id",
        pl.col("session_date").alias("as_of_date"),
        foreign_share=pl.col("foreign_value") / pl.col("value"),
    )
    stress = stress_loans(ltv, foreign, price_shocks, fx_shocks)
    risk = compute_loan_risk(ltv, values, sessions, loans.select("loan_id", "cure_period_days"), model)
    report("risk", 1, 1)
    return stress, risk


@task(name="validate-ltv", cache_policy=NO_CACHE)
def validate_ltv(ltv: pl.DataFrame, run_id: str) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Run the LTV suite; return (rows of loans that passed, results, loans held back)."""
    from expectations.gate import validate_in_parts
    from expectations.suites import LOAN_LTV

    outcome = validate_in_parts(LOAN_LTV, add_ltv_checks(ltv), run_id, "loan_id", LTV_GATE_ROWS)
    accepted, _, blocked = apply_verdict(ltv, outcome.row_reasons, "loan_id")
    if outcome.table_blocked:
        blocked = sorted(ltv["loan_id"].unique().to_list())
    return accepted.filter(~pl.col("loan_id").is_in(blocked)).select(ltv.columns), outcome.results, blocked


@task(name="load-warehouse", cache_policy=NO_CACHE)
def load_warehouse(warehouse: Path, timeout: float, output: RunOutput, run: RunRecord) -> None:
    """Publish the run: bars, staging rows, LTV partitions, quarantine, results and run record, atomically."""
    with open_writer(warehouse, timeout) as con:  # a full or failing disk: WarehouseError, nothing published
        publish_run(con, output, run)
    report("load", 1, 1)
