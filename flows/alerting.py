"""Alert stages of a run: derive alerts with the LTV rows, deliver them after commit, announce them."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from marginwatch import calendar
from marginwatch.book import BookFrames
from marginwatch.bulk_messages import render_frame
from marginwatch.faults import crash_point
from marginwatch.notify import Delivery, Notifier
from transforms.alerts import ALERT_SCHEMA, PRIOR_SCHEMA, find_level_alerts, find_operational_alerts, route_alerts
from warehouse.connection import open_writer
from warehouse.load import RunRecord, pending_deliveries, read_alert_prior, record_alerts, record_delivery

log = logging.getLogger("marginwatch")


@task(name="read-alert-state", cache_policy=NO_CACHE)
def read_alert_state(warehouse: Path, timeout: float, loan_ids: list[str], before: dt.date) -> pl.DataFrame:
    """Return each loan's level before the run's first session and any breach still open then."""
    if not warehouse.exists():
        return pl.DataFrame(schema=PRIOR_SCHEMA)
    with open_writer(warehouse, timeout) as con:
        return read_alert_prior(con, loan_ids, before)


@task(name="raise-alerts", cache_policy=NO_CACHE)
def raise_alerts(
    book: BookFrames,
    ltv: pl.DataFrame,
    prior: pl.DataFrame,
    as_of_end: dt.date,
    held_back: dict[str, str],
    deliver_from: dt.date,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the run's alert records (with subject and body) and the deliveries they need.

    Alerts dated before `deliver_from` (a backfill's history) are recorded but not sent.
    """
    cure_days = book.loans.select("loan_id", "cure_period_days")
    sessions = calendar.sessions_between(calendar.FIRST_DAY, calendar.LAST_DAY)
    currencies = dict(zip(book.loans["loan_id"].to_list(), book.loans["currency"].to_list(), strict=True))
    alerts = pl.concat(
        [
            find_level_alerts(ltv, prior, cure_days, sessions) if ltv.height else pl.DataFrame(schema=ALERT_SCHEMA),
            find_operational_alerts(ltv, as_of_end, held_back, currencies),
        ]
    )
    alerts = render_frame(alerts)
    channels = [(c.name, c.min_level) for c in book.channels]
    recent = alerts.filter(pl.col("as_of_date") >= deliver_from)
    return alerts, route_alerts(recent, channels)


@task(name="deliver-alerts", cache_policy=NO_CACHE)
def deliver_alerts(warehouse: Path, timeout: float, book: BookFrames, report: Path | None = None) -> list[Delivery]:
    """Deliver every pending (alert, channel), recording each outcome as it happens; email may carry `report`."""
    if not warehouse.exists():
        return []
    with open_writer(warehouse, timeout) as con:
        pending = pending_deliveries(con)
    notifier = Notifier(book.channels, report)
    outcomes = []
    for row in pending.iter_rows(named=True):
        outcome = notifier.send(row, row["channel"])
        crash_point("deliver:one-sent")
        with open_writer(warehouse, timeout) as con:
            record_delivery(con, outcome.alert_key, outcome.channel, outcome.error)
        crash_point("deliver:one-recorded")
        outcomes.append(outcome)
    return outcomes


@task(name="announce-alerts", cache_policy=NO_CACHE)
def announce(alerts: pl.DataFrame, ltv: pl.DataFrame, as_of_end: dt.date) -> None:
    """Emit a Prefect event per new recent alert and attach a Markdown summary artifact to the flow run.

    Only alerts recent enough to be sent are announced; a backfill's history would flood the bus.
    """
    from prefect.artifacts import create_markdown_artifact
    from prefect.events import emit_event

    for alert in alerts.iter_rows(named=True):
        emit_event(
            event=f"marginwatch.alert.{alert['kind']}",
            resource={"prefect.resource.id": f"marginwatch.loan.{alert['loan_id']}", "loan_id": alert["loan_id"]},
            payload={k: _jsonable(alert[k]) for k in ("alert_key", "as_of_date", "level", "ltv", "subject")},
        )
    create_markdown_artifact(
        key="marginwatch-run-summary", markdown=_summary_markdown(alerts, ltv, as_of_end), description="LTV and alerts"
    )


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _summary_markdown(alerts: pl.DataFrame, ltv: pl.DataFrame, as_of_end: dt.date) -> str:
    latest = ltv.filter(pl.col("as_of_date") == as_of_end).sort("loan_id")
    lines = [
        f"# marginwatch: LTV on {as_of_end}",
        "",
        "| loan | LTV | level | distance to margin call | margin-call price |",
        "|---|---|---|---|---|",
    ]
    for row in latest.iter_rows(named=True):
        mcp = "" if row["margin_call_price"] is None else f"{row['margin_call_price']:,.2f}"
        lines.append(
            f"| {row['loan_id']} | {row['ltv']:.2%} | {row['status']} | {row['distance_to_margin_call']:.2%} | {mcp} |"
        )
    lines += ["", f"## New alerts ({alerts.height})", ""]
    lines += [f"- {row['subject']}" for row in alerts.sort("as_of_date", "loan_id").iter_rows(named=True)][-50:]
    return "\n".join(lines)


def notify_failure(book: BookFrames, warehouse: Path | None, timeout: float, record: RunRecord, error: str) -> None:
    """Tell every channel that a run failed: through the outbox when the warehouse exists, else directly.

    Never raises: the run's own failure is what the caller reports.
    """
    if not book.channels:
        return
    day = record.as_of_end or calendar.new_york_date(record.started_at)
    alert = failure_alert(record.flow, day, error, record.source)
    try:
        if warehouse is None:
            notifier = Notifier(book.channels)
            for channel in book.channels:
                notifier.send(alert.row(0, named=True), channel.name)
            return
        outbox = pl.DataFrame({"alert_key": alert["alert_key"][0], "channel": [c.name for c in book.channels]})
        with open_writer(warehouse, timeout) as con:
            record_alerts(con, alert, outbox, record.run_id)
        deliver_alerts.fn(warehouse, timeout, book)
    except Exception as exc:  # the failure being reported matters more than this notice
        log.warning("could not notify the failure of run %s: %s", record.run_id, exc)


def failure_alert(flow: str, day: dt.date, error: str, source: str) -> pl.DataFrame:
    """Return the operational alert record for a failed run (one per flow and day)."""
    row = {name: None for name in ALERT_SCHEMA} | {
        "alert_key": f"*/{day}/run_failed/{flow}",
        "loan_id": "*",
        "as_of_date": day,
        "kind": "run_failed",
        "level": flow,
        "detail": error,
        "source": source,
    }
    return render_frame(pl.DataFrame([row], schema=ALERT_SCHEMA))
