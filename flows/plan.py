"""Which as-of sessions a run computes and which bars it fetches (plain date logic)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from marginwatch import calendar
from marginwatch.errors import UsageError

# Bars re-fetched before the first as-of session, beyond the longest averaging window, so
# that late corrections by the source reach staging and averages start from fresh bars.
REFETCH_SESSIONS = 5


@dataclass(frozen=True)
class RunPlan:
    """The as-of sessions to compute and the bar window to fetch."""

    as_of_start: dt.date
    as_of_end: dt.date
    fetch_start: dt.date

    @property
    def fetch_end(self) -> dt.date:
        return self.as_of_end


def require_session(day: dt.date, what: str) -> None:
    """Raise UsageError unless `day` is a NASDAQ session."""
    try:
        ok = calendar.is_session(day)
    except ValueError as exc:
        raise UsageError(f"{what} {day}: {exc}") from None
    if not ok:
        previous = calendar.session_on_or_before(day)
        raise UsageError(f"{what} {day} is not a NASDAQ session (the session before is {previous})")


def require_closed(day: dt.date, latest: dt.date | None, what: str) -> None:
    """Raise UsageError if `day` is after `latest`, the latest completed session (None: no check).

    A session that has not closed has no final bar: a live source would have nothing for it, the
    synthetic one would invent it, and the warehouse would keep it as each loan's newest row.
    """
    if latest is not None and day > latest:
        raise UsageError(f"{what} {day} has not closed yet: the latest completed NASDAQ session is {latest}")


def plan_daily(
    as_of: dt.date,
    last_computed: dict[str, dt.date],
    accrual_starts: dict[str, dt.date],
    max_window: int,
    history_sessions: int = 0,
    *,
    latest: dt.date | None = None,
) -> RunPlan:
    """Plan a daily run: every session since each loan's last computed one, through `as_of`.

    A loan never computed starts at its accrual start, so a first run builds the history, and
    fetches `history_sessions` more before it (what the risk figures look back on). An as-of
    date after `latest` (the latest completed session) is refused.
    """
    require_session(as_of, "as-of date")
    require_closed(as_of, latest, "as-of date")
    starts = []
    for loan_id, accrual_start in accrual_starts.items():
        last = last_computed.get(loan_id)
        starts.append(last + dt.timedelta(days=1) if last else accrual_start)
    start = min(min(starts), as_of)
    first = calendar.sessions_between(start, as_of)
    as_of_start = first[0] if len(first) else as_of
    back = max_window + REFETCH_SESSIONS
    if any(loan_id not in last_computed for loan_id in accrual_starts):
        back = max(back, history_sessions)
    return RunPlan(as_of_start, as_of, calendar.sessions_back(as_of_start, back))


def plan_backfill(
    start: dt.date, end: dt.date, max_window: int, history_sessions: int = 0, *, latest: dt.date | None = None
) -> RunPlan:
    """Plan a backfill over the sessions in [start, end], fetching `history_sessions` before it too.

    An end after `latest` (the latest completed session) is refused.
    """
    if start > end:
        raise UsageError(f"backfill start {start} is after its end {end}")
    require_closed(end, latest, "backfill end")
    try:
        sessions = calendar.sessions_between(start, end)
    except ValueError as exc:
        raise UsageError(f"backfill range {start}..{end}: {exc}") from None
    if not len(sessions):
        raise UsageError(f"backfill range {start}..{end} holds no NASDAQ session")
    first, last = sessions[0], sessions[-1]
    return RunPlan(first, last, calendar.sessions_back(first, max(max_window + REFETCH_SESSIONS, history_sessions)))


@dataclass(frozen=True)
class ScheduleDecision:
    """What a scheduled daily run does at `now`: skip a holiday, or run a session (maybe after a wait)."""

    action: str  # "skip" | "run"
    session: dt.date  # the session to compute, or the holiday skipped
    wait_seconds: float = 0.0
    reason: str = ""


def decide_schedule(now: dt.datetime, settle_minutes: float, max_wait_minutes: float) -> ScheduleDecision:
    """Decide a scheduled run: holidays are skipped; a run before the close waits for it, within a bound.

    The close is the exchange calendar's, so a half day's early close (13:00 New York) is
    honoured; `settle_minutes` after it the session's bar is expected to be final.
    """
    today = calendar.new_york_date(now)
    if not calendar.is_session(today):
        return ScheduleDecision("skip", today, reason=f"{today} is not a NASDAQ session (weekend or holiday)")
    ready = calendar.session_close(today) + dt.timedelta(minutes=settle_minutes)
    wait = (ready - now).total_seconds()
    if wait <= 0:
        return ScheduleDecision("run", today)
    if wait <= max_wait_minutes * 60:
        return ScheduleDecision("run", today, wait, f"waiting {wait / 60:.0f} min for the {ready:%H:%M} UTC close")
    previous = calendar.latest_completed_session(now)
    return ScheduleDecision("run", previous, reason=f"before today's close; computing {previous}")
