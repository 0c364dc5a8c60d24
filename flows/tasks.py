"""The coarse stages of a run, one Prefect task each; only fetching retries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.progress import report
from marginwatch import calendar
from marginwatch.errors import SourceUnavailable
from marginwatch.sources.base import RAW_BAR_SCHEMA, MarketSource
from transforms.ltv import compute_loan_ltv
from transforms.staging import (
    FX_SCHEMA,
    PRICE_SCHEMA,
    deduplicate_bars,
    label_raw_bars,
    stage_fx_rates,
    stage_prices,
)
from warehouse.connection import open_writer
from warehouse.load import RunRecord, publish_run, read_fx_history, read_price_history


@dataclass(frozen=True)
class StagedBatch:
    """A run's fetched bars, labelled, and the staging rows they become."""

    raw: pl.DataFrame
    prices: pl.DataFrame
    fx_rates: pl.DataFrame


def _retry_when_transient(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except SourceUnavailable as exc:
        return exc.transient
    except Exception:
        return False
    return False


@task(
    name="fetch-bars",
    retries=2,
    retry_delay_seconds=[2, 5],
    retry_condition_fn=_retry_when_transient,
    cache_policy=NO_CACHE,
)
def fetch_bars(source: MarketSource, symbols: list[str], start: dt.date, end: dt.date) -> pl.DataFrame:
    """Return the source's bars for every symbol in [start, end] (grain: symbol x session date)."""
    frames = []
    for done, symbol in enumerate(symbols, start=1):
        frames.append(source.fetch_bars([symbol], start, end))
        report("fetch", done, len(symbols))
    return pl.concat(frames) if frames else pl.DataFrame(schema=RAW_BAR_SCHEMA)


@task(name="stage-bars", cache_policy=NO_CACHE)
def stage_bars(raw: pl.DataFrame, source: str, run_id: str, fetched_at: dt.datetime) -> StagedBatch:
    """Return the labelled raw bars and their deduplicated, typed staging rows."""
    labelled = label_raw_bars(raw, source, run_id, fetched_at)
    latest = deduplicate_bars(labelled.lazy())
    prices, fx_rates = pl.collect_all([stage_prices(latest), stage_fx_rates(latest)])
    report("stage", 1, 1)
    return StagedBatch(labelled, prices, fx_rates)


@task(name="read-history", cache_policy=NO_CACHE)
def read_history(
    warehouse: Path,
    timeout: float,
    symbols: list[str],
    pairs: list[str],
    since: dt.date,
    until: dt.date,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return staged prices and FX rates already in the warehouse for the run's window."""
    if not warehouse.exists():
        return pl.DataFrame(schema=PRICE_SCHEMA), pl.DataFrame(schema=FX_SCHEMA)
    with open_writer(warehouse, timeout) as con:
        return read_price_history(con, symbols, since, until), read_fx_history(con, pairs, since, until)


def _newest(history: pl.DataFrame, incoming: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Return history with rows replaced by incoming ones on the same keys."""
    return pl.concat([history.join(incoming.select(keys), on=keys, how="anti"), incoming])


@task(name="compute-ltv", cache_policy=NO_CACHE)
def compute_ltv(
    loans: pl.DataFrame,
    collateral: pl.DataFrame,
    history: tuple[pl.DataFrame, pl.DataFrame],
    batch: StagedBatch,
    as_of_start: dt.date,
    as_of_end: dt.date,
    stale_after: int,
) -> pl.DataFrame:
    """Return LTV rows for every loan and session in [as_of_start, as_of_end]."""
    prices = _newest(history[0], batch.prices, ["symbol", "session_date"])
    fx_rates = _newest(history[1], batch.fx_rates, ["pair", "session_date"])
    sessions = calendar.sessions_between(calendar.FIRST_DAY, as_of_end).to_frame().lazy()
    as_of_dates = calendar.sessions_between(as_of_start, as_of_end).to_frame("as_of_date").lazy()
    ltv = compute_loan_ltv(
        loans.lazy(),
        collateral.lazy(),
        sessions,
        as_of_dates,
        prices.lazy(),
        fx_rates.lazy(),
        stale_after,
    ).collect()
    report("compute", 1, 1)
    return ltv


@task(name="load-warehouse", cache_policy=NO_CACHE)
def load_warehouse(
    warehouse: Path,
    timeout: float,
    batch: StagedBatch,
    ltv: pl.DataFrame,
    loan_ids: list[str],
    run: RunRecord,
) -> None:
    """Publish the run: bars, staging rows, the LTV partition and the run record, atomically."""
    with open_writer(warehouse, timeout) as con:
        publish_run(con, batch.raw, batch.prices, batch.fx_rates, ltv, loan_ids, run)
    report("load", 1, 1)
