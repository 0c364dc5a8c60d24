"""NASDAQ session arithmetic: the latest completed session agrees with the exchange calendar's own answer."""

from __future__ import annotations

import datetime as dt
import random

import pandas as pd
import pytest

from marginwatch import calendar

NEW_YORK = dt.timezone(dt.timedelta(hours=-5))  # late November: EST


def _calendar_answer(now: dt.datetime) -> dt.date:
    """exchange_calendars' previous_close, strictly before the minute after `now`: a close this minute counts."""
    moment = pd.Timestamp(now).tz_convert("UTC").floor("min") + pd.Timedelta(minutes=1)
    return calendar._nasdaq().previous_close(moment).tz_convert("America/New_York").date()  # type: ignore[no-any-return]


def test_a_session_counts_from_its_close_minute_and_a_half_day_closes_at_one() -> None:
    friday_after_thanksgiving = dt.date(2026, 11, 27)  # a half day
    assert calendar.latest_completed_session(dt.datetime(2026, 11, 27, 12, 59, 59, tzinfo=NEW_YORK)) == dt.date(
        2026, 11, 25
    )
    assert calendar.latest_completed_session(dt.datetime(2026, 11, 27, 13, 0, 30, tzinfo=NEW_YORK)) == (
        friday_after_thanksgiving
    )


def test_the_latest_completed_session_matches_the_calendar_at_random_moments_and_around_closes() -> None:
    generator = random.Random(5)
    start = dt.datetime(1995, 1, 4, tzinfo=dt.UTC)
    moments = [start + dt.timedelta(minutes=generator.randrange(60 * 24 * 365 * 45)) for _ in range(3_000)]
    for day in calendar.sessions_between(dt.date(2026, 1, 1), dt.date(2026, 12, 31)).to_list():
        close = calendar.session_close(day)
        moments += [close - dt.timedelta(seconds=1), close, close + dt.timedelta(seconds=59)]
    assert [calendar.latest_completed_session(m) for m in moments] == [_calendar_answer(m) for m in moments]


def test_a_moment_before_the_calendar_is_refused() -> None:
    with pytest.raises(ValueError, match="before the supported calendar"):
        calendar.latest_completed_session(dt.datetime(1990, 1, 1, tzinfo=dt.UTC))
