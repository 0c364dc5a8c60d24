"""Risk and stress marts filled by the real flows: coverage, idempotence, and runs that split the same history."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from flows.backfill import backfill
from flows.daily import daily
from marginwatch.config import Book, load_book
from tests.integration.conftest import rows

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date.fromisoformat
RISK = "SELECT * EXCLUDE (run_id) FROM marts.loan_risk_daily ORDER BY loan_id, as_of_date, method"
STRESS = "SELECT * EXCLUDE (run_id) FROM marts.loan_stress_daily ORDER BY ALL"


def differences(left: list[tuple], right: list[tuple]) -> list[tuple]:
    """Return (row key, column index, left value, right value) for every cell that differs."""
    assert len(left) == len(right)
    return [
        (a[:3], i, x, y)
        for a, b in zip(left, right, strict=True)
        for i, (x, y) in enumerate(zip(a, b, strict=False))
        if x != y
    ]


@pytest.fixture
def book(book_path: Path) -> Book:
    return load_book(book_path)


def test_every_ltv_row_gets_both_methods_and_every_scenario(tmp_path: Path, book: Book) -> None:
    path = tmp_path / "w.duckdb"
    daily(book, str(path), "synthetic", D("2026-04-30"))
    ltv_rows = rows(path, "SELECT count(*) FROM marts.loan_ltv_daily")[0][0]
    assert rows(path, "SELECT count(*) FROM marts.loan_risk_daily")[0][0] == 2 * ltv_rows
    # The dollar loan: five price shocks. The yen loan: five, then 0% and the five with each of two FX shocks.
    assert rows(
        path, "SELECT loan_id, count(*) / count(DISTINCT as_of_date) FROM marts.loan_stress_daily GROUP BY 1 ORDER BY 1"
    ) == [("sbg-arm-jpy", 17.0), ("sbg-arm-usd", 5.0)]
    # The first run fetched the risk look-back before the accrual start: a full volatility window from day one.
    assert rows(
        path, "SELECT min(returns_used), count(*) FILTER (WHERE sigma_1d IS NULL) FROM marts.loan_risk_daily"
    ) == [(250, 0)]
    # The synthetic crash: on the eve of the margin call a call within 21 sessions was likely, in calm times not.
    eve = rows(
        path,
        "SELECT method, p_margin_call_21d FROM marts.loan_risk_daily "
        "WHERE loan_id = 'sbg-arm-usd' AND as_of_date = '2026-03-20' ORDER BY 1",
    )
    calm = rows(path, "SELECT max(p_margin_call_21d) FROM marts.loan_risk_daily WHERE as_of_date < '2026-01-02'")
    assert all(p > 0.5 for _, p in eve) and calm[0][0] < 0.05


def test_daily_runs_after_a_backfill_equal_one_backfill_bit_for_bit(tmp_path: Path, book: Book) -> None:
    whole, split = tmp_path / "whole.duckdb", tmp_path / "split.duckdb"
    backfill(book, str(whole), D("2026-03-02"), D("2026-03-27"), "synthetic")
    backfill(book, str(split), D("2026-03-02"), D("2026-03-20"), "synthetic")
    for day in ("2026-03-23", "2026-03-24", "2026-03-25", "2026-03-26", "2026-03-27"):
        daily(book, str(split), "synthetic", D(day))
    assert differences(rows(split, RISK), rows(whole, RISK)) == []
    assert differences(rows(split, STRESS), rows(whole, STRESS)) == []


def test_a_rerun_replaces_the_risk_rows_and_risk_can_be_turned_off(tmp_path: Path, book: Book) -> None:
    path = tmp_path / "w.duckdb"
    daily(book, str(path), "synthetic", D("2026-03-31"))
    first = rows(path, RISK)
    daily(book, str(path), "synthetic", D("2026-03-31"))
    assert differences(rows(path, RISK), first) == []
    off = book.model_copy(
        update={
            "settings": book.settings.model_copy(
                update={"risk": book.settings.risk.model_copy(update={"enabled": False})}
            )
        }
    )
    daily(off, str(path), "synthetic", D("2026-04-01"))
    assert rows(path, "SELECT max(as_of_date) FROM marts.loan_ltv_daily") == [(D("2026-04-01"),)]
    assert rows(path, "SELECT max(as_of_date) FROM marts.loan_risk_daily") == [(D("2026-03-31"),)]
