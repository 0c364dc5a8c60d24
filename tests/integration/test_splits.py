"""A stock split: the source restates history, staging is restated whole, pledged shares follow the split."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from flows.backfill import backfill
from flows.daily import daily
from marginwatch.calendar import sessions_between
from marginwatch.config import load_book
from tests.integration.conftest import rows

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date.fromisoformat
BOOK = """
[[loans]]
id = "split"
borrower = "Test"
currency = "USD"
principal = 30000
annual_rate = 0
accrual_start = 2025-12-01
[loans.levels]
warning = 0.40
margin_call = 0.50
liquidation = 0.65
cure_target = 0.35
[[loans.collateral]]
symbol = "ARM"
shares = 1000          # stated on 2025-12-01, before the split
"""


def write_arm(folder: Path, closes: dict[dt.date, float], splits: dict[dt.date, float]) -> None:
    folder.mkdir(exist_ok=True)
    days = sorted(closes)
    pl.DataFrame(
        {
            "Date": days,
            "Open": [closes[d] for d in days],
            "High": [closes[d] for d in days],
            "Low": [closes[d] for d in days],
            "Close": [closes[d] for d in days],
            "Adj Close": [closes[d] for d in days],
            "Volume": [1000] * len(days),
            "Dividends": [0.0] * len(days),
            "Stock Splits": [splits.get(d, 0.0) for d in days],
        }
    ).write_csv(folder / "ARM.csv")


def test_a_two_for_one_split_restates_history_and_keeps_ltv_continuous(tmp_path: Path) -> None:
    (tmp_path / "book.toml").write_text(BOOK)
    book, folder, warehouse = load_book(tmp_path / "book.toml"), tmp_path / "bars", tmp_path / "w.duckdb"
    before = list(sessions_between(D("2025-12-01"), D("2026-01-09")))
    write_arm(folder, dict.fromkeys(before, 100.0), {})
    daily(book, str(warehouse), f"csv:{folder}", D("2026-01-09"))
    assert rows(warehouse, "SELECT ltv FROM marts.loan_ltv_daily WHERE as_of_date = '2026-01-09'") == [(0.3,)]

    # Yahoo after a 2-for-1 split on 2026-01-12: every earlier close halved, the split on its day.
    write_arm(folder, dict.fromkeys(before, 50.0) | {D("2026-01-12"): 51.0}, {D("2026-01-12"): 2.0})
    daily(book, str(warehouse), f"csv:{folder}", D("2026-01-12"))
    # 1000 shares pledged before the split are 2000 after it: 30000 / (2000 x 51), not a false margin call.
    assert rows(warehouse, "SELECT status, ltv FROM marts.loan_ltv_daily WHERE as_of_date = '2026-01-12'") == [
        ("ok", pytest.approx(30000 / (2000 * 51), rel=1e-12))
    ]
    # Staging holds one basis: the December bars, older than the run's window, were restated too.
    assert rows(warehouse, "SELECT DISTINCT close FROM staging.prices WHERE session_date < '2026-01-12'") == [(50.0,)]
    backfill(book, str(warehouse), D("2025-12-01"), D("2026-01-12"), f"csv:{folder}")
    assert rows(
        warehouse, "SELECT DISTINCT round(ltv, 12) FROM marts.loan_ltv_daily WHERE as_of_date < '2026-01-12'"
    ) == [(0.3,)]
