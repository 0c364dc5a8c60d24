"""Which sessions a run computes and which bars it fetches."""

from __future__ import annotations

import datetime as dt

import pytest

from flows.plan import REFETCH_SESSIONS, plan_backfill, plan_daily
from marginwatch import calendar
from marginwatch.errors import UsageError

D = dt.date.fromisoformat
ACCRUAL = {"a": D("2025-11-11"), "b": D("2025-11-11")}


def test_a_first_run_fetches_the_risk_look_back_before_the_accrual_start() -> None:
    plan = plan_daily(D("2026-03-31"), {}, ACCRUAL, 5, 751)
    assert plan.as_of_start == D("2025-11-11")
    assert plan.fetch_start == calendar.sessions_back(D("2025-11-11"), 751)


def test_a_run_after_earlier_ones_refetches_only_a_few_sessions() -> None:
    last = {"a": D("2026-03-30"), "b": D("2026-03-30")}
    plan = plan_daily(D("2026-03-31"), last, ACCRUAL, 5, 751)
    assert (plan.as_of_start, plan.fetch_start) == (
        D("2026-03-31"),
        calendar.sessions_back(D("2026-03-31"), 5 + REFETCH_SESSIONS),
    )


def test_a_new_loan_in_an_old_book_brings_the_look_back_with_it() -> None:
    plan = plan_daily(D("2026-03-31"), {"a": D("2026-03-30")}, ACCRUAL, 5, 751)
    assert plan.fetch_start == calendar.sessions_back(plan.as_of_start, 751)


def test_a_backfill_fetches_the_longer_of_the_window_and_the_look_back() -> None:
    assert plan_backfill(D("2026-03-02"), D("2026-03-31"), 5, 751).fetch_start == calendar.sessions_back(
        D("2026-03-02"), 751
    )
    assert plan_backfill(D("2026-03-02"), D("2026-03-31"), 5, 0).fetch_start == calendar.sessions_back(
        D("2026-03-02"), 10
    )


def test_a_backfill_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(UsageError, match="after its end"):
        plan_backfill(D("2026-03-31"), D("2026-03-02"), 5)


def test_a_session_that_has_not_closed_is_refused_for_a_daily_run_and_a_backfill() -> None:
    latest = D("2026-03-30")
    with pytest.raises(UsageError, match=r"as-of date 2026-03-31 has not closed yet: .* session is 2026-03-30"):
        plan_daily(D("2026-03-31"), {}, ACCRUAL, 5, latest=latest)
    with pytest.raises(UsageError, match=r"backfill end 2026-03-31 has not closed yet"):
        plan_backfill(D("2026-03-02"), D("2026-03-31"), 5, latest=latest)
    assert plan_daily(latest, {}, ACCRUAL, 5, latest=latest).as_of_end == latest
    assert plan_backfill(D("2026-03-02"), latest, 5, latest=latest).as_of_end == latest
    with pytest.raises(UsageError, match="not a NASDAQ session"):  # a holiday says so, not "not closed"
        plan_daily(D("2026-11-26"), {}, ACCRUAL, 5, latest=latest)
