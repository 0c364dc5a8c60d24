"""The daily and backfill flows under a real Prefect harness, into a real DuckDB file."""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from flows import tasks
from flows.backfill import backfill
from flows.collector import YOUNG_THRESHOLD
from flows.daily import daily
from marginwatch.config import Book, load_book
from marginwatch.errors import InputError
from tests.conftest import SHARED_DATA
from tests.integration.conftest import rows

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date.fromisoformat


MART = "SELECT * EXCLUDE (run_id) FROM marts.loan_ltv_daily ORDER BY loan_id, as_of_date"


@pytest.fixture
def book(book_path: Path) -> Book:
    return load_book(book_path)


def test_first_daily_run_builds_history_and_tells_the_synthetic_story(tmp_path: Path, book: Book) -> None:
    path = tmp_path / "w.duckdb"
    summary = daily(book, str(path), "synthetic", D("2026-06-30"))
    assert (summary.as_of_start, summary.as_of_end) == (D("2025-11-11"), D("2026-06-30"))
    changes = rows(
        path,
        """SELECT loan_id, list(status ORDER BY as_of_date) FROM (
             SELECT loan_id, as_of_date, status, lag(status) OVER (PARTITION BY loan_id ORDER BY as_of_date) AS prev
             FROM marts.loan_ltv_daily) WHERE prev IS DISTINCT FROM status GROUP BY 1 ORDER BY 1""",
    )
    story = ["ok", "warning", "margin_call", "warning", "ok"]
    assert changes == [("sbg-arm-jpy", story), ("sbg-arm-usd", story)]
    assert rows(path, "SELECT DISTINCT source FROM marts.loan_ltv_daily") == [("synthetic",)]
    assert rows(path, "SELECT DISTINCT source FROM staging.prices") == [("synthetic",)]
    assert rows(path, "SELECT flow, status, ltv_rows FROM meta.runs") == [("daily", "succeeded", 2 * 158)]
    # where the run's time went, every stage of it, on its record
    stages = last_run_stages(path)
    done = ["book", "plan", "read", "fetch", "gate", "compute", "ltv_check", "risk", "alert_rules", "load"]
    assert set(stages) == {*done, "data_docs", "report", "deliver", "backup", "announce", "other", "total"}
    assert all(seconds >= 0 for seconds in stages.values()) and stages["report"] > 0
    assert sum(v for name, v in stages.items() if name != "total") == pytest.approx(stages["total"], abs=0.01)


def last_run_stages(path: Path) -> dict[str, float]:
    found = rows(path, "SELECT stage_seconds FROM meta.runs ORDER BY started_at DESC LIMIT 1")[0][0]
    return dict(json.loads(found))


def test_rerun_of_the_same_day_gives_identical_rows(tmp_path: Path, book: Book) -> None:
    path = tmp_path / "w.duckdb"
    daily(book, str(path), "synthetic", D("2026-03-31"))
    first = rows(path, MART)
    raw_before = rows(path, "SELECT count(*) FROM raw.market_bars")[0][0]
    again = daily(book, str(path), "synthetic", D("2026-03-31"))
    assert (again.as_of_start, again.as_of_end) == (D("2026-03-31"), D("2026-03-31"))
    assert rows(path, MART) == first
    assert rows(path, "SELECT count(*) FROM raw.market_bars")[0][0] > raw_before  # raw is append-only
    assert rows(path, "SELECT count(*) = count(DISTINCT (symbol, session_date)) FROM staging.prices") == [(True,)]


def test_daily_catches_up_every_missed_session(tmp_path: Path, book: Book) -> None:
    path = tmp_path / "w.duckdb"
    daily(book, str(path), "synthetic", D("2026-03-02"))
    summary = daily(book, str(path), "synthetic", D("2026-03-06"))
    assert (summary.as_of_start, summary.as_of_end) == (D("2026-03-03"), D("2026-03-06"))
    dates = rows(
        path, "SELECT DISTINCT as_of_date FROM marts.loan_ltv_daily WHERE as_of_date > '2026-02-27' ORDER BY 1"
    )
    assert [d for (d,) in dates] == [
        D("2026-03-02"),
        D("2026-03-03"),
        D("2026-03-04"),
        D("2026-03-05"),
        D("2026-03-06"),
    ]


def test_backfill_and_daily_runs_agree(tmp_path: Path, book: Book) -> None:
    by_daily, by_backfill = tmp_path / "daily.duckdb", tmp_path / "backfill.duckdb"
    daily(book, str(by_daily), "synthetic", D("2026-04-30"))
    summary = backfill(book, str(by_backfill), D("2025-11-11"), D("2026-04-30"), "synthetic")
    assert summary.counts["ltv_rows"] == rows(by_daily, "SELECT count(*) FROM marts.loan_ltv_daily")[0][0]
    assert rows(by_backfill, MART) == rows(by_daily, MART)


def test_the_next_ltv_partition_computes_while_the_flow_checks_this_one(
    tmp_path: Path, book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_loan_each = book.model_copy(update={"settings": book.settings.model_copy(update={"ltv_partition_loans": 1})})
    started = [threading.Event() for _ in book.loans]
    calls = itertools.count()
    compute, check = tasks.ltv_on_grid, tasks.validate_ltv

    def computing(*args: Any) -> Any:
        started[next(calls)].set()
        return compute(*args)

    overlapped: list[bool] = []

    def checking(ltv: Any, run_id: str) -> Any:
        following = len(overlapped) + 1
        overlapped.append(following == len(started) or started[following].wait(timeout=60))
        return check(ltv, run_id)

    monkeypatch.setattr(tasks, "ltv_on_grid", computing)
    monkeypatch.setattr(tasks, "validate_ltv", checking)
    path = tmp_path / "w.duckdb"
    backfill(one_loan_each, str(path), D("2026-01-02"), D("2026-03-27"), "synthetic")
    assert overlapped == [True, True]  # the second loan's partition had started before the first was checked
    assert rows(path, "SELECT count(DISTINCT loan_id) FROM marts.loan_ltv_daily") == [(2,)]


def test_a_run_spares_the_collector_what_the_process_held_and_gives_it_back_after(
    tmp_path: Path, book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, bool]] = []
    check = tasks.validate_ltv

    def checking(ltv: Any, run_id: str) -> Any:
        seen.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))
        return check(ltv, run_id)

    monkeypatch.setattr(tasks, "validate_ltv", checking)
    path = tmp_path / "w.duckdb"
    daily(book, str(path), "synthetic", D("2026-03-31"))
    assert seen and set(seen) == {(max(YOUNG_THRESHOLD, before[0]), True)}
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, 0)
    with pytest.raises(InputError):  # a failed run gives it back too
        backfill(book, str(path), D("2026-03-31"), D("2026-03-02"), "synthetic")
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, 0)


def test_holiday_as_of_is_refused_and_recorded_without_other_changes(tmp_path: Path, book: Book) -> None:
    path = tmp_path / "w.duckdb"
    daily(book, str(path), "synthetic", D("2026-11-25"))
    before = rows(path, MART)
    with pytest.raises(InputError, match="2026-11-26 is not a NASDAQ session"):
        daily(book, str(path), "synthetic", D("2026-11-26"))
    # A caller's mistake is not announced to the channels: no run_failed notice.
    assert rows(path, "SELECT count(*) FROM marts.alerts WHERE kind = 'run_failed'") == [(0,)]
    assert rows(path, MART) == before
    assert rows(path, "SELECT status FROM meta.runs ORDER BY started_at") == [("succeeded",), ("failed",)]


def test_a_session_that_has_not_closed_is_refused_and_writes_no_row(tmp_path: Path, book: Book) -> None:
    path = tmp_path / "w.duckdb"
    daily(book, str(path), "synthetic", D("2026-03-30"))
    before = rows(path, MART)
    evening = dt.datetime(2026, 3, 30, 22, 0, tzinfo=dt.UTC)  # the 30th has closed, the 31st has not
    with pytest.raises(InputError, match="as-of date 2026-03-31 has not closed yet"):
        daily(book, str(path), "synthetic", D("2026-03-31"), evening)
    with pytest.raises(InputError, match="backfill end 2026-03-31 has not closed yet"):
        backfill(book, str(path), D("2026-03-02"), D("2026-03-31"), "synthetic", evening)
    assert rows(path, MART) == before
    assert rows(path, "SELECT count(*) FROM marts.alerts WHERE kind = 'run_failed'") == [(0,)]
    assert rows(path, "SELECT status FROM meta.runs ORDER BY started_at") == [("succeeded",), ("failed",), ("failed",)]
    assert daily(book, str(path), "synthetic", D("2026-03-31")).as_of_end == D("2026-03-31")  # once it has closed


def test_malformed_csv_source_leaves_the_warehouse_as_it_was(tmp_path: Path, book: Book) -> None:
    path = tmp_path / "w.duckdb"
    daily(book, str(path), "synthetic", D("2026-01-30"))
    tables = ["raw.market_bars", "staging.prices", "staging.fx_rates", "marts.loan_ltv_daily"]
    before = {t: rows(path, f"SELECT * FROM {t} ORDER BY ALL") for t in tables}
    folder = tmp_path / "bars"
    folder.mkdir()
    (folder / "ARM.csv").write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2026-02-02,1,2,0.5,oops,1,10\n")
    (folder / "JPY=X.csv").write_text("Date,Close,High,Low,Open,Volume\n2026-02-02,150,151,149,150,0\n")
    with pytest.raises(InputError, match=r"ARM.csv line 2, column Close: 'oops' is not a number"):
        daily(book, str(path), f"csv:{folder}", D("2026-02-02"))
    assert {t: rows(path, f"SELECT * FROM {t} ORDER BY ALL") for t in tables} == before
    assert rows(path, "SELECT status, error LIKE '%oops%' FROM meta.runs ORDER BY started_at")[-1] == ("failed", True)
    assert {"book", "plan", "fetch"} <= set(last_run_stages(path)) and "load" not in last_run_stages(path)


def test_failure_on_a_new_warehouse_creates_no_file(tmp_path: Path, book: Book) -> None:
    path = tmp_path / "w.duckdb"
    with pytest.raises(InputError, match="does not exist"):
        daily(book, str(path), f"csv:{tmp_path / 'missing'}", D("2026-02-02"))
    assert not path.exists()


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="real market history (../shared/data) is not present")
def test_real_history_from_csv_gives_hand_checked_ltv_and_flags_stale_fx(tmp_path: Path, book: Book) -> None:
    folder = tmp_path / "real"
    folder.mkdir()
    shutil.copy(SHARED_DATA / "ARM_daily.csv", folder / "ARM.csv")
    shutil.copy(SHARED_DATA / "USDJPY_daily.csv", folder / "JPY=X.csv")
    path = tmp_path / "w.duckdb"
    backfill(book, str(path), D("2025-11-11"), D("2026-04-24"), f"csv:{folder}")
    usd = rows(
        path, "SELECT ltv, price FROM marts.loan_ltv_daily WHERE loan_id = 'sbg-arm-usd' AND as_of_date = '2025-11-11'"
    )
    # ARM closed 149.74000549316406 on 2025-11-11; no interest accrued yet: 8.5e9 / (769e6 * 149.74...)
    assert usd[0][1] == 149.74000549316406
    assert usd[0][0] == pytest.approx(8.5e9 / (769e6 * 149.74000549316406), rel=1e-12)
    # The USD/JPY file ends 2026-02-23, so the yen loan's FX is carried forward and turns stale.
    last = rows(
        path,
        "SELECT fx_date, is_stale FROM marts.loan_ltv_daily WHERE loan_id = 'sbg-arm-jpy' AND as_of_date = '2026-04-24'",
    )
    assert last == [(D("2026-02-23"), True)]
