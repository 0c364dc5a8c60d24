"""The body both flows share: plan, fetch, stage, compute and publish under the run lock."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from prefect.runtime import flow_run

from flows import tasks
from flows.plan import RunPlan
from flows.sources import make_source
from marginwatch.book import collateral_frame, loan_frame, market_symbols
from marginwatch.config import Book
from marginwatch.errors import MarginwatchError
from transforms.staging import fx_pair_expr
from warehouse.connection import open_writer, run_lock
from warehouse.load import RunRecord, last_as_of_dates, record_failed_run

log = logging.getLogger("marginwatch")

Planner = Callable[[dict[str, dt.date]], RunPlan]


@dataclass(frozen=True)
class RunSummary:
    """What a finished run computed, for the caller to show."""

    run_id: str
    flow: str
    source: str
    as_of_start: dt.date
    as_of_end: dt.date
    counts: dict[str, int]
    ltv: pl.DataFrame = field(repr=False)


def _pairs(symbols: list[str]) -> list[str]:
    base, quote = fx_pair_expr(pl.col("symbol"))
    fx = pl.DataFrame(
        {"symbol": [s for s in symbols if s.endswith("=X")]},
        schema={"symbol": pl.String},
    )
    return fx.select(base + quote).to_series().to_list()


def execute(
    flow_name: str,
    book: Book,
    warehouse: Path,
    source_spec: str | None,
    planner: Planner,
    parameters: dict[str, Any],
) -> RunSummary:
    """Run the pipeline for the sessions `planner` chooses and publish it in one transaction."""
    settings = book.settings
    source_name = source_spec or settings.source
    run_id = str(flow_run.get_id() or uuid.uuid4())
    record = RunRecord(run_id, flow_name, parameters, source_name, dt.datetime.now(dt.UTC))
    loans, collateral = loan_frame(book), collateral_frame(book)
    loan_ids = loans["loan_id"].to_list()
    timeout = settings.lock_timeout_seconds
    with run_lock(warehouse, timeout):
        existed = warehouse.exists()
        try:
            source = make_source(source_name, settings.synthetic_seed)
            last = _last_computed(warehouse, timeout, loan_ids) if existed else {}
            plan = planner(last)
            record.as_of_start, record.as_of_end = plan.as_of_start, plan.as_of_end
            symbols = market_symbols(book)
            raw = tasks.fetch_bars(source, symbols, plan.fetch_start, plan.fetch_end)
            batch = tasks.stage_bars(raw, source.name, run_id, dt.datetime.now(dt.UTC))
            history = tasks.read_history(
                warehouse,
                timeout,
                [s for s in symbols if not s.endswith("=X")],
                _pairs(symbols),
                plan.fetch_start,
                plan.fetch_end,
            )
            ltv = tasks.compute_ltv(
                loans,
                collateral,
                history,
                batch,
                plan.as_of_start,
                plan.as_of_end,
                settings.stale_after_sessions,
            ).with_columns(run_id=pl.lit(run_id))
            record.counts = {
                "bars_fetched": raw.height,
                "prices_staged": batch.prices.height,
                "fx_staged": batch.fx_rates.height,
                "ltv_rows": ltv.height,
            }
            tasks.load_warehouse(warehouse, timeout, batch, ltv, loan_ids, record)
        except Exception as exc:
            if existed:
                _record_failure(warehouse, timeout, record, exc)
            raise
    return RunSummary(
        run_id,
        flow_name,
        source.name,
        plan.as_of_start,
        plan.as_of_end,
        record.counts,
        ltv,
    )


def _last_computed(warehouse: Path, timeout: float, loan_ids: list[str]) -> dict[str, dt.date]:
    with open_writer(warehouse, timeout) as con:
        return last_as_of_dates(con, loan_ids)


def _record_failure(warehouse: Path, timeout: float, record: RunRecord, exc: Exception) -> None:
    message = str(exc) if isinstance(exc, MarginwatchError) else f"{type(exc).__name__}: {exc}"
    try:
        with open_writer(warehouse, timeout) as con:
            record_failed_run(con, record, message.splitlines()[0] if message else type(exc).__name__)
    except Exception as inner:  # the original failure matters more than its record
        log.warning("could not record the failed run %s: %s", record.run_id, inner)
