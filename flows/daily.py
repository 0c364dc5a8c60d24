"""The daily flow: LTV for the latest session, catching up every session missed since."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow

from flows.collector import run_collector
from flows.plan import plan_daily
from flows.run import RunSummary, as_book, execute, risk_history_sessions
from flows.stages import stage, timing_run
from marginwatch import calendar
from marginwatch.config import Book


@flow(name="marginwatch-daily", log_prints=True)
def daily(
    book: Book | str,
    warehouse: str,
    source: str | None = None,
    as_of: dt.date | None = None,
    now: dt.datetime | None = None,
    wait_for_bars_minutes: float = 0.0,
) -> RunSummary:
    """Compute and publish LTV through `as_of` (default: the latest completed NASDAQ session).

    `book` is a validated Book or the path of its TOML file; pass the path for large books, as
    Prefect keeps every flow parameter (and caps them at 512 KB).
    """
    with run_collector(), timing_run():  # see flows/collector.py and flows/stages.py
        with stage("book"):
            loaded = as_book(book)
        moment = now or dt.datetime.now(dt.UTC)
        latest = calendar.latest_completed_session(moment)
        day = as_of or latest
        accrual = loaded.accrual_starts()
        window = loaded.max_window
        return execute(
            "daily",
            loaded,
            Path(warehouse),
            source,
            lambda last: plan_daily(day, last, accrual, window, risk_history_sessions(loaded), latest=latest),
            {"as_of": day.isoformat(), "source": source, "warehouse": warehouse},
            moment,
            wait_for_bars_minutes * 60,
        )
