"""The backfill flow: LTV for every session in a date range, in one vectorised run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow

from flows.collector import run_collector
from flows.plan import plan_backfill
from flows.run import RunSummary, as_book, execute, risk_history_sessions
from flows.stages import stage, timing_run
from marginwatch import calendar
from marginwatch.config import Book


@flow(name="marginwatch-backfill", log_prints=True)
def backfill(
    book: Book | str,
    warehouse: str,
    start: dt.date,
    end: dt.date,
    source: str | None = None,
    now: dt.datetime | None = None,
) -> RunSummary:
    """Compute and publish LTV for every NASDAQ session in [start, end] (`book`: a Book or its TOML path)."""
    with run_collector(), timing_run():  # see flows/collector.py and flows/stages.py
        with stage("book"):
            loaded = as_book(book)
        window = loaded.max_window
        moment = now or dt.datetime.now(dt.UTC)
        latest = calendar.latest_completed_session(moment)
        return execute(
            "backfill",
            loaded,
            Path(warehouse),
            source,
            lambda _last: plan_backfill(start, end, window, risk_history_sessions(loaded), latest=latest),
            {
                "start": start.isoformat(),
                "end": end.isoformat(),
                "source": source,
                "warehouse": warehouse,
            },
            moment,
        )
