"""Scheduled daily operation at the flow level: holidays, half days, late bars, catch-up, failures, Dask."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from flows.backfill import backfill
from flows.runners import task_runner_for
from flows.scheduled import scheduled_daily
from marginwatch.config import EMBEDDED_BOOK, load_book
from tests.integration.conftest import rows
from tests.integration.test_quality_gate import synthetic, write_bars

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date.fromisoformat
UTC = dt.UTC


@pytest.fixture
def book_file(tmp_path: Path) -> Path:
    """The default book with its file channel writing into the test's folder."""
    path = tmp_path / "book.toml"
    text = EMBEDDED_BOOK.read_text().replace('file = "marginwatch-alerts.log"', f'file = "{tmp_path / "alerts.log"}"')
    path.write_text(text)
    return path


def test_holiday_records_a_skipped_run_and_raises_no_alert(tmp_path: Path, book_file: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    thanksgiving = dt.datetime(2026, 11, 26, 22, 30, tzinfo=UTC)
    assert scheduled_daily(str(book_file), str(warehouse), "synthetic", now=thanksgiving) is None
    assert rows(warehouse, "SELECT flow, status, as_of_end, error FROM meta.runs") == [
        ("scheduled", "skipped", D("2026-11-26"), "2026-11-26 is not a NASDAQ session (weekend or holiday)")
    ]
    assert rows(warehouse, "SELECT count(*) FROM marts.alerts") == [(0,)]
    assert not (tmp_path / "alerts.log").exists()


def test_half_day_waits_for_the_early_close_then_computes_that_session(tmp_path: Path, book_file: Path) -> None:
    # The day after Thanksgiving closes at 13:00 New York (18:00 UTC); the bar is expected 10 min later.
    before_close = dt.datetime(2026, 11, 27, 18, 9, 58, tzinfo=UTC)
    summary = scheduled_daily(str(book_file), str(tmp_path / "w.duckdb"), "synthetic", now=before_close)
    assert summary is not None and summary.as_of_end == D("2026-11-27")


def test_missing_bar_is_waited_for_then_raises_a_stale_source_alert(tmp_path: Path, book_file: Path) -> None:
    folder, warehouse = tmp_path / "bars", tmp_path / "w.duckdb"
    write_bars(folder, synthetic("2025-10-01", "2026-03-23"))  # the 03-24 bar never comes
    evening = dt.datetime(2026, 3, 24, 22, 0, tzinfo=UTC)
    summary = scheduled_daily(str(book_file), str(warehouse), f"csv:{folder}", wait_for_bars_minutes=0.05, now=evening)
    assert summary is not None and summary.as_of_end == D("2026-03-24")
    stale = rows(warehouse, "SELECT loan_id, detail FROM marts.alerts WHERE kind = 'stale_source' ORDER BY 1")
    assert stale == [
        ("sbg-arm-jpy", "no new price for 1 sessions (last price 2026-03-23)"),
        ("sbg-arm-usd", "no new price for 1 sessions (last price 2026-03-23)"),
    ]
    assert "STALE PRICE sbg-arm-usd: last price 2026-03-23" in (tmp_path / "alerts.log").read_text()


def test_a_missed_day_is_caught_up_by_the_next_scheduled_run(tmp_path: Path, book_file: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    scheduled_daily(str(book_file), str(warehouse), "synthetic", now=dt.datetime(2026, 3, 20, 22, 0, tzinfo=UTC))
    # Monday 03-23's run never happened (server down); Tuesday's run loads both sessions.
    summary = scheduled_daily(
        str(book_file), str(warehouse), "synthetic", now=dt.datetime(2026, 3, 24, 22, 0, tzinfo=UTC)
    )
    assert summary is not None and (summary.as_of_start, summary.as_of_end) == (D("2026-03-23"), D("2026-03-24"))
    assert rows(warehouse, "SELECT count(*) FROM marts.loan_ltv_daily WHERE as_of_date = '2026-03-23'") == [(2,)]


def test_failed_run_notifies_the_channels_and_leaves_the_warehouse_as_it_was(tmp_path: Path, book_file: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    scheduled_daily(str(book_file), str(warehouse), "synthetic", now=dt.datetime(2026, 3, 20, 22, 0, tzinfo=UTC))
    before = rows(warehouse, "SELECT * FROM marts.loan_ltv_daily ORDER BY ALL")
    with pytest.raises(Exception, match="does not exist"):
        scheduled_daily(
            str(book_file), str(warehouse), f"csv:{tmp_path / 'gone'}", now=dt.datetime(2026, 3, 23, 22, 0, tzinfo=UTC)
        )
    assert rows(warehouse, "SELECT * FROM marts.loan_ltv_daily ORDER BY ALL") == before
    assert rows(warehouse, "SELECT status FROM meta.runs WHERE flow = 'daily' ORDER BY started_at") == [
        ("succeeded",),
        ("failed",),
    ]
    notice = rows(
        warehouse,
        "SELECT o.status FROM marts.alerts a JOIN meta.alert_outbox o USING (alert_key) WHERE a.kind = 'run_failed'",
    )
    assert notice == [("delivered",)]
    assert "RUN FAILED marginwatch daily for 2026-03-23" in (tmp_path / "alerts.log").read_text()


def test_dask_cluster_runs_the_fetch_and_partitioned_ltv_with_identical_rows(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    base = load_book(EMBEDDED_BOOK)
    by_threads, by_dask = tmp_path / "threads.duckdb", tmp_path / "dask.duckdb"
    backfill(base, str(by_threads), D("2026-02-02"), D("2026-04-30"), "synthetic")
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        settings = base.settings.model_copy(
            update={"task_runner": "dask", "dask_address": cluster.scheduler_address, "ltv_partition_loans": 1}
        )
        book = base.model_copy(update={"settings": settings})
        flow_fn = backfill.with_options(task_runner=task_runner_for(settings))
        with Client(cluster) as client:
            summary = flow_fn(book, str(by_dask), D("2026-02-02"), D("2026-04-30"), "synthetic")
            executed = client.run(lambda dask_worker: dask_worker.state.transition_counter)
    assert len(executed) == 2  # two worker processes
    # 2 symbols fetched and 2 one-loan LTV partitions: the workers ran those tasks (several transitions each).
    assert sum(executed.values()) >= 4, executed
    mart = "SELECT * EXCLUDE (run_id) FROM marts.loan_ltv_daily ORDER BY loan_id, as_of_date"
    assert summary.counts["ltv_rows"] == 2 * 62  # two loans, 62 sessions
    assert rows(by_dask, mart) == rows(by_threads, mart)
    assert sorted(rows(by_dask, "SELECT DISTINCT loan_id FROM marts.loan_ltv_daily")) == [
        ("sbg-arm-jpy",),
        ("sbg-arm-usd",),
    ]
