"""The data-quality gate end to end: quarantine, exit 3, untouched marts, unconfirmed moves, FX rules."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
import pytest

from expectations import docs
from flows.backfill import backfill
from flows.daily import daily
from marginwatch.compiled_templates import TolerantBytecodeCache
from marginwatch.config import Book, load_book
from marginwatch.sources.synthetic import SyntheticSource
from tests.conftest import SHARED_DATA
from tests.integration.conftest import rows
from tests.integration.test_cli import marginwatch

pytestmark = pytest.mark.slow
D = dt.date.fromisoformat
HEADER = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]


def write_bars(folder: Path, bars: pl.DataFrame) -> None:
    """Write raw bars as one yfinance-layout CSV file per symbol."""
    folder.mkdir(exist_ok=True)
    for (symbol,), frame in bars.group_by("symbol"):
        frame.sort("session_date").select(
            pl.col("session_date").alias("Date"),
            pl.col("open").alias("Open"),
            pl.col("high").alias("High"),
            pl.col("low").alias("Low"),
            pl.col("close").alias("Close"),
            pl.col("adj_close").alias("Adj Close"),
            pl.col("volume").cast(pl.Int64).alias("Volume"),
        ).write_csv(folder / f"{symbol}.csv")


def synthetic(start: str, end: str) -> pl.DataFrame:
    return SyntheticSource().fetch_bars(["ARM", "JPY=X"], D(start), D(end))


def set_close(bars: pl.DataFrame, symbol: str, day: str, close: float) -> pl.DataFrame:
    hit = (pl.col("symbol") == symbol) & (pl.col("session_date") == D(day))
    return bars.with_columns(
        [pl.when(hit).then(close).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close", "adj_close")]
    )


def test_corrupted_batch_exits_3_quarantines_keeps_marts_and_a_clean_rerun_publishes(tmp_path: Path) -> None:
    folder = tmp_path / "bars"
    good = synthetic("2025-10-01", "2026-01-30")
    write_bars(folder, good.filter(pl.col("session_date") <= D("2026-01-29")))
    first = marginwatch("run", "--as-of", "2026-01-29", "--source", f"csv:{folder}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    warehouse = tmp_path / "marginwatch.duckdb"
    marts_before = rows(warehouse, "SELECT * FROM marts.loan_ltv_daily ORDER BY ALL")
    prices_before = rows(warehouse, "SELECT * FROM staging.prices ORDER BY ALL")

    corrupt = set_close(good, "ARM", "2026-01-30", -12.5)
    duplicate = good.filter((pl.col("symbol") == "ARM") & (pl.col("session_date") == D("2026-01-28")))
    write_bars(folder, pl.concat([corrupt, duplicate]))
    failed = marginwatch("run", "--as-of", "2026-01-30", "--source", f"csv:{folder}", cwd=tmp_path)
    assert failed.returncode == 3, failed.stderr
    assert "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "marginwatch: error: data-quality gate held back symbols ARM; loans sbg-arm-jpy, sbg-arm-usd"
    )
    assert "bars.close_positive (1 rows)" in last and "bars.unique_symbol_session (2 rows)" in last
    assert rows(warehouse, "SELECT * FROM marts.loan_ltv_daily ORDER BY ALL") == marts_before
    assert rows(warehouse, "SELECT * FROM staging.prices ORDER BY ALL") == prices_before
    quarantined = rows(warehouse, "SELECT session_date, close, reasons FROM raw.quarantined_bars ORDER BY 1, 2")
    assert [(day, close) for day, close, _ in quarantined] == [
        (D("2026-01-28"), duplicate["close"][0]),
        (D("2026-01-28"), duplicate["close"][0]),
        (D("2026-01-30"), -12.5),
    ]
    assert all("unique_symbol_session" in reasons for _, _, reasons in quarantined[:2])
    assert "close_positive" in quarantined[2][2]
    assert rows(warehouse, "SELECT status FROM meta.runs ORDER BY started_at DESC LIMIT 1") == [("dq_failed",)]
    latest = (
        "SELECT success FROM meta.dq_results WHERE check_name = 'close_positive' ORDER BY validated_at DESC LIMIT 1"
    )
    assert rows(warehouse, latest) == [(False,)]

    write_bars(folder, good)
    clean = marginwatch("run", "--as-of", "2026-01-30", "--source", f"csv:{folder}", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    assert rows(warehouse, "SELECT count(*) FROM marts.loan_ltv_daily WHERE as_of_date = '2026-01-30'") == [(2,)]
    docs = re.search(r"data docs: (\S+)", clean.stdout)
    assert docs and Path(docs.group(1)).is_file()
    latest = marginwatch("dq", "--format", "json", cwd=tmp_path)
    assert latest.returncode == 0 and {r["suite"] for r in json.loads(latest.stdout)} == {
        "bars",
        "fx_rates",
        "loan_ltv_daily",
    }
    again = marginwatch("dq", "--start", "2026-01-02", "--end", "2026-01-30", "--format", "csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "loan_ltv_daily,status_matches_levels" in again.stdout
    assert rows(warehouse, "SELECT status FROM meta.runs WHERE flow = 'revalidate'") == [("succeeded",)]


def small_book(book_path: Path, tmp_path: Path) -> Book:
    """One USD loan on 1,000 ARM shares: LTV 0.30 at $100, margin call (0.50) below $60."""
    text = """
[[loans]]
id = "small"
borrower = "Test"
currency = "USD"
principal = 30000
annual_rate = 0
accrual_start = 2026-01-02
[loans.levels]
warning = 0.40
margin_call = 0.50
liquidation = 0.65
cure_target = 0.35
[[loans.collateral]]
symbol = "ARM"
shares = 1000
"""
    path = tmp_path / "small.toml"
    path.write_text(text)
    return load_book(path)


def flat_bars(closes: dict[str, float]) -> pl.DataFrame:
    """ARM bars with the given closes (open = high = low = close)."""
    days = sorted(closes)
    return pl.DataFrame(
        {
            "symbol": "ARM",
            "session_date": [D(d) for d in days],
            "open": [closes[d] for d in days],
            "high": [closes[d] for d in days],
            "low": [closes[d] for d in days],
            "close": [closes[d] for d in days],
            "adj_close": [closes[d] for d in days],
            "volume": 1000.0,
            "dividends": 0.0,
            "stock_splits": 0.0,
        }
    )


JAN = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09", "2026-01-12", "2026-01-13"]


@pytest.mark.usefixtures("prefect_harness")
def test_real_large_fall_is_published_unconfirmed_then_confirmed_by_the_next_session(
    tmp_path: Path, book_path: Path
) -> None:
    book, folder, warehouse = small_book(book_path, tmp_path), tmp_path / "bars", tmp_path / "w.duckdb"
    closes = dict.fromkeys(JAN[:5], 100.0) | {JAN[5]: 55.0}
    write_bars(folder, flat_bars(closes))
    daily(book, str(warehouse), f"csv:{folder}", D(JAN[5]))
    # A 45% fall: the margin call is not held back, but the row says the price is unconfirmed.
    assert rows(
        warehouse, f"SELECT status, is_unconfirmed FROM marts.loan_ltv_daily WHERE as_of_date = '{JAN[5]}'"
    ) == [("margin_call", True)]
    write_bars(folder, flat_bars(closes | {JAN[6]: 54.0}))
    daily(book, str(warehouse), f"csv:{folder}", D(JAN[6]))
    got = rows(
        warehouse,
        f"SELECT as_of_date, status, is_unconfirmed FROM marts.loan_ltv_daily WHERE as_of_date >= '{JAN[5]}' ORDER BY 1",
    )
    assert got == [(D(JAN[5]), "margin_call", False), (D(JAN[6]), "margin_call", False)]


@pytest.mark.usefixtures("prefect_harness")
def test_bad_tick_stays_unconfirmed_and_its_reversal_is_not_a_move(tmp_path: Path, book_path: Path) -> None:
    book, folder, warehouse = small_book(book_path, tmp_path), tmp_path / "bars", tmp_path / "w.duckdb"
    closes = dict.fromkeys(JAN[:5], 100.0) | {JAN[5]: 10.0, JAN[6]: 100.0}  # a lost decimal, then back
    write_bars(folder, flat_bars(closes))
    daily(book, str(warehouse), f"csv:{folder}", D(JAN[6]))
    got = rows(
        warehouse,
        f"SELECT as_of_date, status, is_unconfirmed FROM marts.loan_ltv_daily WHERE as_of_date >= '{JAN[5]}' ORDER BY 1",
    )
    assert got == [(D(JAN[5]), "liquidation", True), (D(JAN[6]), "ok", False)]
    warnings = rows(warehouse, "SELECT unexpected_count FROM meta.dq_results WHERE check_name = 'move_within_bound'")
    assert warnings == [(2,)]


@pytest.mark.usefixtures("prefect_harness")
def test_weekend_fx_rows_stay_in_raw_and_are_reported(tmp_path: Path, book_path: Path) -> None:
    book, folder, warehouse = load_book(book_path), tmp_path / "bars", tmp_path / "w.duckdb"
    bars = synthetic("2025-12-01", "2026-01-09")
    saturday = bars.filter((pl.col("symbol") == "JPY=X") & (pl.col("session_date") == D("2026-01-02"))).with_columns(
        session_date=pl.lit(D("2026-01-03"))
    )
    write_bars(folder, pl.concat([bars, saturday]))
    backfill(book, str(warehouse), D("2026-01-05"), D("2026-01-09"), f"csv:{folder}")
    assert rows(warehouse, "SELECT count(*) FROM raw.market_bars WHERE session_date = '2026-01-03'") == [(1,)]
    assert rows(warehouse, "SELECT count(*) FROM staging.fx_rates WHERE session_date = '2026-01-03'") == [(0,)]
    assert rows(warehouse, "SELECT success, unexpected_count FROM meta.dq_results WHERE check_name = 'weekday'") == [
        (False, 1)
    ]


@pytest.mark.usefixtures("prefect_harness")
def test_data_docs_open_offline(tmp_path: Path, book_path: Path) -> None:
    summary = daily(load_book(book_path), str(tmp_path / "w.duckdb"), "synthetic", D("2026-01-09"))
    assert summary.data_docs is not None and summary.data_docs.is_file()
    pages = list(summary.data_docs.parent.rglob("*.html"))
    assert len(pages) >= 4  # index, three suites' validations, expectation pages
    remote = re.compile(r"<(script|link|img|iframe)\b[^>]*(src|href)\s*=\s*[\"']https?://", re.IGNORECASE)
    assert [p.name for p in pages if remote.search(p.read_text())] == []


@pytest.mark.usefixtures("prefect_harness")
def test_data_docs_templates_are_compiled_once_for_later_runs(
    tmp_path: Path, book_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = TolerantBytecodeCache(str(tmp_path / "compiled"))
    (tmp_path / "compiled").mkdir()
    monkeypatch.setattr(docs, "template_cache", lambda: cache)
    summary = daily(load_book(book_path), str(tmp_path / "w.duckdb"), "synthetic", D("2026-01-09"))
    assert summary.data_docs is not None
    kept = sorted(p.name for p in (tmp_path / "compiled").iterdir())
    assert len(kept) >= 3  # the index page, the pages and their parts
    compiled: list[str] = []
    compile_source: Any = jinja2.Environment.compile

    def counting(self: jinja2.Environment, source: str, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        compiled.append(name or "<string>")
        return compile_source(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    again = docs.build_data_docs(tmp_path / "again")  # new views over the same validations, as the next run's
    assert [n for n in compiled if n != "<string>"] == []  # every template file came compiled from the cache
    first = sorted(p.relative_to(summary.data_docs.parent) for p in summary.data_docs.parent.rglob("*.html"))
    assert sorted(p.relative_to(again.parent) for p in again.parent.rglob("*.html")) == first
    assert sorted(p.name for p in (tmp_path / "compiled").iterdir()) == kept


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="real market history (../shared/data) is not present")
@pytest.mark.usefixtures("prefect_harness")
def test_real_arm_history_passes_every_blocking_check(tmp_path: Path, book_path: Path) -> None:
    folder = tmp_path / "real"
    folder.mkdir()
    shutil.copy(SHARED_DATA / "ARM_daily.csv", folder / "ARM.csv")
    shutil.copy(SHARED_DATA / "USDJPY_daily.csv", folder / "JPY=X.csv")
    warehouse = tmp_path / "w.duckdb"
    backfill(load_book(book_path), str(warehouse), D("2023-09-14"), D("2026-04-24"), f"csv:{folder}")
    failed = rows(
        warehouse, "SELECT suite, check_name FROM meta.dq_results WHERE NOT success AND severity = 'blocking'"
    )
    assert failed == []
    # ARM closed 47.9% up on 2024-02-08 after earnings and held it: a confirmed large move.
    assert rows(warehouse, "SELECT is_unconfirmed FROM staging.prices WHERE session_date = '2024-02-08'") == [(False,)]
    assert rows(warehouse, "SELECT count(*) FROM raw.quarantined_bars") == [(0,)]
