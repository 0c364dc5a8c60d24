"""NASDAQ sessions from the exchange calendar, as plain dates."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import polars as pl

CALENDAR_CODE = "XNAS"
FIRST_DAY = dt.date(1995, 1, 3)
LAST_DAY = dt.date(2040, 12, 31)


@lru_cache(maxsize=1)
def _nasdaq() -> xcals.ExchangeCalendar:
    return xcals.get_calendar(CALENDAR_CODE, start=FIRST_DAY.isoformat(), end=LAST_DAY.isoformat())


@lru_cache(maxsize=1)
def _all_sessions() -> pl.Series:
    days = _nasdaq().sessions.values.astype("datetime64[D]")
    return pl.Series("session_date", days).cast(pl.Date)


def _check_range(day: dt.date) -> None:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{day} is outside the supported calendar {FIRST_DAY}..{LAST_DAY}")


def sessions_between(start: dt.date, end: dt.date) -> pl.Series:
    """Return the NASDAQ session dates in [start, end], ascending."""
    _check_range(start)
    _check_range(end)
    sessions = _all_sessions()
    return sessions.filter((sessions >= start) & (sessions <= end))


def is_session(day: dt.date) -> bool:
    """Return whether NASDAQ holds a session on `day`."""
    _check_range(day)
    return bool(_nasdaq().is_session(pd.Timestamp(day)))


def session_on_or_before(day: dt.date) -> dt.date:
    """Return the latest session date on or before `day`."""
    _check_range(day)
    sessions = _all_sessions()
    return sessions.filter(sessions <= day)[-1]  # type: ignore[no-any-return]


def sessions_back(day: dt.date, count: int) -> dt.date:
    """Return the session `count` sessions before the latest session on or before `day`."""
    sessions = _all_sessions()
    index = sessions.search_sorted(session_on_or_before(day), side="left") - count
    return sessions[max(0, index)]  # type: ignore[no-any-return]


def latest_completed_session(now: dt.datetime) -> dt.date:
    """Return the most recent session whose close is at or before `now` (tz-aware)."""
    # A session closing this minute counts: compare whole minutes. The calendar's own
    # previous_close builds lookup tables on first use (0.3 s a process); a search over the closes does not.
    moment = pd.Timestamp(now).tz_convert("UTC").floor("min").as_unit("ns").value
    index = int(np.searchsorted(_closes(), moment, side="right")) - 1
    if index < 0:
        raise ValueError(f"{now} is before the supported calendar {FIRST_DAY}..{LAST_DAY}")
    return _all_sessions()[index]  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def _closes() -> np.ndarray:  # type: ignore[type-arg]
    """Each session's close in UTC nanoseconds, aligned with `_all_sessions`."""
    return _nasdaq().closes.dt.tz_convert("UTC").values.astype("datetime64[ns]").astype("int64")


def session_close(day: dt.date) -> dt.datetime:
    """Return the session's close as an aware UTC datetime (13:00 New York on half days)."""
    _check_range(day)
    return _nasdaq().session_close(pd.Timestamp(day)).to_pydatetime()  # type: ignore[no-any-return]


def new_york_date(moment: dt.datetime) -> dt.date:
    """Return the calendar date in New York at `moment` (tz-aware)."""
    return pd.Timestamp(moment).tz_convert("America/New_York").date()  # type: ignore[no-any-return]
