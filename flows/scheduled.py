"""The flow deployments run every weekday after the close: skip holidays, wait for the bar, then run daily."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

from flows.daily import daily
from flows.plan import decide_schedule
from flows.run import RunSummary
from flows.runners import task_runner_for
from marginwatch.book_cache import read_book
from marginwatch.config import resolve_environment
from warehouse.connection import open_writer, run_lock
from warehouse.load import RunRecord, record_run_outcome


@flow(name="marginwatch-scheduled", log_prints=True)
def scheduled_daily(
    config: str | None = None,
    warehouse: str | None = None,
    source: str | None = None,
    settle_minutes: float = 10.0,
    max_wait_minutes: float = 240.0,
    wait_for_bars_minutes: float = 60.0,
    now: dt.datetime | None = None,
) -> RunSummary | None:
    """Run the daily flow for today's session once it has closed; record a skip on weekends and holidays.

    The config is read when the run starts, so edits to the book apply from the next run.
    """
    env = resolve_environment(Path(config) if config else None, Path(warehouse) if warehouse else None)
    book = read_book(env.config_path)
    moment = now or dt.datetime.now(dt.UTC)
    decision = decide_schedule(moment, settle_minutes, max_wait_minutes)
    if decision.action == "skip":
        _record_skip(
            env.warehouse_path,
            book.settings.lock_timeout_seconds,
            decision.session,
            decision.reason,
            source or book.settings.source,
        )
        print(f"skipped: {decision.reason}")
        return None
    if decision.wait_seconds:
        print(decision.reason)
        time.sleep(decision.wait_seconds)
        moment += dt.timedelta(seconds=decision.wait_seconds)
    runner = daily.with_options(task_runner=task_runner_for(book.settings))
    return runner(
        str(env.config_path), str(env.warehouse_path), source, decision.session, moment, wait_for_bars_minutes
    )


def _record_skip(warehouse: Path, timeout: float, day: dt.date, reason: str, source: str) -> None:
    run_id = str(flow_run.get_id() or uuid.uuid4())
    record = RunRecord(run_id, "scheduled", {"date": day.isoformat()}, source, dt.datetime.now(dt.UTC), day, day)
    with run_lock(warehouse, timeout), open_writer(warehouse, timeout) as con:
        record_run_outcome(con, record, "skipped", reason)


@flow(name="marginwatch-backfill-deployment", log_prints=True)
def scheduled_backfill(
    start: dt.date,
    end: dt.date | None = None,
    config: str | None = None,
    warehouse: str | None = None,
    source: str | None = None,
) -> RunSummary:
    """Backfill [start, end] (default: through the latest completed session) with the book read at run time."""
    from flows.backfill import backfill
    from marginwatch.calendar import latest_completed_session

    env = resolve_environment(Path(config) if config else None, Path(warehouse) if warehouse else None)
    book = read_book(env.config_path)
    last = end or latest_completed_session(dt.datetime.now(dt.UTC))
    runner = backfill.with_options(task_runner=task_runner_for(book.settings))
    return runner(str(env.config_path), str(env.warehouse_path), start, last, source)
