"""The tables the load keeps beside the LTV mart always equal what they are defined from."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import duckdb
import polars as pl
import pytest

from expectations.gate import RESULT_SCHEMA
from flows import run
from flows.backfill import backfill
from flows.daily import daily
from marginwatch.config import Book, load_book
from marginwatch.errors import WarehouseError
from tests.integration.conftest import rows
from tests.integration.test_warehouse import NOW, ltv_rows
from transforms.staging import FX_SCHEMA, PRICE_SCHEMA
from warehouse import load
from warehouse.connection import open_writer
from warehouse.load import RunOutput, RunRecord, publish_run, read_alert_prior

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date.fromisoformat

LATEST = """SELECT * EXCLUDE (run_id) FROM marts.loan_ltv_daily
            QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY as_of_date DESC) = 1 ORDER BY loan_id"""
BREACHES = """SELECT * EXCLUDE (run_id) FROM marts.loan_ltv_daily
              WHERE status IN ('margin_call', 'liquidation') ORDER BY loan_id, as_of_date"""

# A loan's rows since its last calm one share that row's count of calm rows: the newest row's group,
# if that row is in breach, is the open breach, and its first breach row is where it began.
OPEN_BREACHES = """WITH counted AS (
                       SELECT loan_id, as_of_date, status,
                              count(*) FILTER (WHERE status IN ('ok', 'warning'))
                                  OVER (PARTITION BY loan_id ORDER BY as_of_date) AS calm_rows
                       FROM marts.loan_ltv_daily),
                   newest AS (
                       SELECT * FROM counted
                       QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY as_of_date DESC) = 1)
                   SELECT n.loan_id, n.as_of_date, n.status, min(c.as_of_date) AS episode_start
                   FROM newest n JOIN counted c ON c.loan_id = n.loan_id AND c.calm_rows = n.calm_rows
                   WHERE n.status IN ('margin_call', 'liquidation') AND c.status IN ('margin_call', 'liquidation')
                   GROUP BY ALL ORDER BY loan_id"""


def assert_kept_tables_agree(path: Path) -> None:
    assert rows(path, "SELECT * EXCLUDE (run_id) FROM marts.loan_ltv_latest ORDER BY loan_id") == rows(path, LATEST)
    kept = rows(path, "SELECT * EXCLUDE (run_id) FROM marts.margin_call_days ORDER BY loan_id, as_of_date")
    assert kept == rows(path, BREACHES)
    assert rows(path, "SELECT * FROM marts.open_breaches ORDER BY loan_id") == rows(path, OPEN_BREACHES)


@pytest.fixture
def book(book_path: Path) -> Book:
    return load_book(book_path)


def test_kept_tables_follow_backfills_catch_ups_and_reruns_of_older_sessions(tmp_path: Path, book: Book) -> None:
    path = tmp_path / "w.duckdb"
    backfill(book, str(path), D("2026-01-02"), D("2026-03-27"), "synthetic")
    assert_kept_tables_agree(path)
    assert rows(path, "SELECT count(*) FROM marts.margin_call_days")[0][0] > 0  # the story's crash is in range
    assert rows(path, "SELECT count(*) FROM marts.open_breaches")[0][0] > 0  # and still open on its last day
    daily(book, str(path), "synthetic", D("2026-04-17"))  # catches up every missed session
    assert_kept_tables_agree(path)
    backfill(book, str(path), D("2026-03-02"), D("2026-03-31"), "synthetic")  # older sessions again
    assert_kept_tables_agree(path)
    assert rows(path, "SELECT DISTINCT as_of_date FROM marts.loan_ltv_latest") == [(D("2026-04-17"),)]


def test_a_breach_open_before_a_run_keeps_its_start_without_the_loans_history_being_read(
    tmp_path: Path, book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.duckdb"
    in_memory_up_to = run.SPILL_LOAN_DAYS
    monkeypatch.setattr(run, "SPILL_LOAN_DAYS", 0)  # the backfill's breach starts come from set-aside partitions
    backfill(book, str(path), D("2026-02-02"), D("2026-03-31"), "synthetic")  # into the story's margin call
    monkeypatch.setattr(run, "SPILL_LOAN_DAYS", in_memory_up_to)  # the daily's from its rows in memory
    ids = [loan.id for loan in book.loans]
    with open_writer(path) as con:  # the kept tables answer as the history does
        assert (
            read_alert_prior(con, ids, D("2026-04-01"))
            .sort("loan_id")
            .equals(load._read_history_prior(con, ids, D("2026-04-01")).sort("loan_id"))
        )
    history_reads: list[list[str]] = []
    read_history = load._read_history_prior

    def noting(con: duckdb.DuckDBPyConnection, loan_ids: list[str], before: dt.date) -> pl.DataFrame:
        history_reads.append(loan_ids)
        return read_history(con, loan_ids, before)

    monkeypatch.setattr(load, "_read_history_prior", noting)
    daily(book, str(path), "synthetic", D("2026-04-02"))  # two sessions on
    assert history_reads == []
    assert_kept_tables_agree(path)
    opened = rows(path, "SELECT episode_start FROM marts.open_breaches")
    assert opened and all(start < D("2026-04-01") for (start,) in opened)  # begun before the daily's sessions
    with open_writer(path) as con:  # a warehouse from before the table: its migration fills it from the history
        con.execute("DROP TABLE marts.open_breaches")
        con.execute("DELETE FROM meta.schema_version WHERE name = 'open_breaches'")
    with open_writer(path):
        pass
    assert_kept_tables_agree(path)
    assert len(rows(path, "SELECT * FROM marts.open_breaches")) == len(opened)


def test_a_spilled_backfill_publishes_what_an_in_memory_one_does(
    tmp_path: Path, book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_memory, spilled = tmp_path / "memory.duckdb", tmp_path / "spilled.duckdb"
    backfill(book, str(in_memory), D("2025-12-01"), D("2026-04-30"), "synthetic")
    monkeypatch.setattr(run, "SPILL_LOAN_DAYS", 0)
    set_aside, written = run._set_aside, []

    def noting(rows: pl.DataFrame, where: Path) -> Path:
        written.append((where.name, rows.height))
        return set_aside(rows, where)

    monkeypatch.setattr(run, "_set_aside", noting)
    one_loan_each = book.model_copy(update={"settings": book.settings.model_copy(update={"ltv_partition_loans": 1})})
    backfill(one_loan_each, str(spilled), D("2025-12-01"), D("2026-04-30"), "synthetic")
    assert not list(tmp_path.glob(".spilled.duckdb.spill-*"))  # the set-aside rows are gone once published
    # The kept tables are loaded from each partition's own newest and breach rows, not from every loan-day.
    sizes = dict(written)
    assert [sizes[f"newest-0000{i}.parquet"] for i in (0, 1)] == [1, 1]
    assert 0 < sizes["breaches-00000.parquet"] < sizes["ltv-00000.parquet"]
    for table in ("marts.loan_ltv_daily", "marts.loan_ltv_latest", "marts.margin_call_days", "marts.loan_risk_daily"):
        sql = f"SELECT * EXCLUDE (run_id) FROM {table} ORDER BY ALL"
        assert rows(spilled, sql) == rows(in_memory, sql), table
    assert rows(spilled, "SELECT count(*) FROM marts.loan_risk_daily")[0][0] > 0  # risk valued from the slim prices
    for table in ("staging.prices", "raw.market_bars"):  # set aside in Parquet, then published in full
        sql = f"SELECT * EXCLUDE (run_id, fetched_at) FROM {table} ORDER BY ALL"
        assert rows(spilled, sql) == rows(in_memory, sql), table
    alerts = "SELECT * EXCLUDE (run_id, created_at) FROM marts.alerts ORDER BY alert_key"
    assert rows(spilled, alerts) == rows(in_memory, alerts)
    assert_kept_tables_agree(spilled)


# A partition's rows while partitions remain, the last's, and a kept table's rows set aside beside them.
@pytest.mark.parametrize("refused", ["ltv-00000.parquet", "ltv-00001.parquet", "breaches-00001.parquet"])
def test_a_set_aside_the_disk_refuses_fails_the_run_and_leaves_the_warehouse_as_it_was(
    tmp_path: Path, book: Book, monkeypatch: pytest.MonkeyPatch, refused: str
) -> None:
    path = tmp_path / "w.duckdb"
    backfill(book, str(path), D("2026-01-02"), D("2026-01-30"), "synthetic")
    before = rows(path, "SELECT * FROM marts.loan_ltv_daily ORDER BY ALL")
    one_loan_each = book.model_copy(update={"settings": book.settings.model_copy(update={"ltv_partition_loans": 1})})
    monkeypatch.setattr(run, "SPILL_LOAN_DAYS", 0)
    set_aside = run._set_aside
    writers: set[str] = set()

    def refusing(rows: pl.DataFrame, where: Path) -> Path:
        if where.name.startswith("ltv-"):  # a partition's rows (the raw bars and prices go before, on the flow's)
            writers.add(threading.current_thread().name)
        if where.name == refused:
            raise WarehouseError(f"{where.parent}: cannot set rows aside before publishing: [Errno 28] No space left")
        return set_aside(rows, where)

    monkeypatch.setattr(run, "_set_aside", refusing)
    with pytest.raises(WarehouseError, match="No space left"):
        backfill(one_loan_each, str(path), D("2026-01-02"), D("2026-03-27"), "synthetic")
    assert {name.split("_")[0] for name in writers} == {
        run.SET_ASIDE_THREAD
    }  # the partitions' rows, off the flow's thread
    assert rows(path, "SELECT * FROM marts.loan_ltv_daily ORDER BY ALL") == before
    assert rows(path, "SELECT status, count(*) FROM meta.runs GROUP BY 1 ORDER BY 1") == [
        ("failed", 1),
        ("succeeded", 1),
    ]
    assert not list(tmp_path.glob(".w.duckdb.spill-*"))  # the set-aside folder is gone with the failed run


def _publish_ltv(path: Path, ltv: pl.DataFrame, start: dt.date, end: dt.date, run_id: str) -> None:
    record = RunRecord(run_id, "test", {}, "test", NOW, start, end, {"ltv_rows": ltv.height})
    raw = pl.DataFrame(schema={name: dtype for name, dtype in PRICE_SCHEMA.items() if name != "is_unconfirmed"})
    output = RunOutput(
        raw,
        pl.DataFrame(schema=PRICE_SCHEMA),
        pl.DataFrame(schema=FX_SCHEMA),
        ltv.with_columns(run_id=pl.lit(run_id)),
        ["a"],
        raw.with_columns(reasons=pl.lit("x")),
        pl.DataFrame(schema=RESULT_SCHEMA),
    )
    with open_writer(path) as con:
        publish_run(con, output, record)


def test_a_loan_whose_newest_sessions_are_replaced_by_none_falls_back_to_its_newest_older_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.duckdb"
    first, second = D("2026-01-05"), D("2026-01-06")
    day_one = ltv_rows("ok").drop("run_id")
    day_two = ltv_rows("margin_call").drop("run_id").with_columns(as_of_date=pl.lit(second), price_date=pl.lit(second))
    _publish_ltv(path, pl.concat([day_one, day_two]), first, second, "r1")
    assert rows(path, "SELECT as_of_date, status FROM marts.loan_ltv_latest") == [(second, "margin_call")]
    assert rows(path, "SELECT as_of_date FROM marts.margin_call_days") == [(second,)]
    # A run that hands the load no breach starts: the open breach's start is read from the history.
    assert rows(path, "SELECT * FROM marts.open_breaches") == [("a", second, "margin_call", second)]
    assert_kept_tables_agree(path)
    _publish_ltv(path, day_two.head(0), second, second, "r2")  # the second session recomputed to nothing
    assert rows(path, "SELECT as_of_date, status FROM marts.loan_ltv_latest") == [(first, "ok")]
    assert rows(path, "SELECT count(*) FROM marts.margin_call_days") == [(0,)]
    assert_kept_tables_agree(path)
