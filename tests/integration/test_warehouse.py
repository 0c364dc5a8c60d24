"""The warehouse against a real DuckDB file: migrations, atomic publish, read-only guard."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest

from expectations.gate import RESULT_SCHEMA
from marginwatch.errors import InputError, WarehouseBusy, WarehouseError
from transforms.ltv import LTV_SCHEMA
from transforms.staging import FX_SCHEMA, PRICE_SCHEMA
from warehouse.connection import open_reader, open_writer, run_lock
from warehouse.load import RunOutput, RunRecord, publish_run
from warehouse.migrate import MIGRATIONS_DIR, load_migrations
from warehouse.queries import check_read_only_sql, run_query

pytestmark = pytest.mark.slow
NOW = dt.datetime(2026, 1, 6, 22, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 1, 5)


def price_rows(close: float, run_id: str = "r1") -> pl.DataFrame:
    row = {
        "symbol": "ARM",
        "session_date": DAY,
        "open": close,
        "high": close,
        "low": close,
        "close": close,
        "adj_close": close,
        "volume": 10,
        "dividends": 0.0,
        "stock_splits": 0.0,
        "source": "test",
        "run_id": run_id,
        "fetched_at": NOW,
        "is_unconfirmed": False,
    }
    return pl.DataFrame([row], schema=PRICE_SCHEMA)


def ltv_rows(status: str = "ok", run_id: str = "r1") -> pl.DataFrame:
    row = {
        "loan_id": "a",
        "as_of_date": DAY,
        "price_date": DAY,
        "fx_date": None,
        "currency": "USD",
        "collateral_value": 1000.0,
        "loan_balance": 300.0,
        "ltv": 0.3,
        "status": status,
        "price": 10.0,
        "fx": 1.0,
        "margin_call_price": 6.0,
        "liquidation_price": 4.6,
        "distance_to_margin_call": 0.4,
        "cure_cash": 0.0,
        "cure_shares": 0.0,
        "sessions_since_price": 0,
        "is_stale": False,
        "is_unconfirmed": False,
        "warning_ltv": 0.4,
        "margin_call_ltv": 0.5,
        "liquidation_ltv": 0.65,
        "cure_target_ltv": 0.35,
        "source": "test",
    }
    return pl.DataFrame([row], schema=LTV_SCHEMA).with_columns(run_id=pl.lit(run_id))


def publish(path: Path, close: float, status: str = "ok", run_id: str = "r1") -> None:
    raw = (
        price_rows(close, run_id)
        .drop("source", "run_id", "fetched_at", "is_unconfirmed")
        .with_columns(
            pl.col("volume").cast(pl.Float64), source=pl.lit("test"), fetched_at=pl.lit(NOW), run_id=pl.lit(run_id)
        )
    )
    run = RunRecord(run_id, "test", {}, "test", NOW, DAY, DAY, {"ltv_rows": 1})
    with open_writer(path) as con:
        output = RunOutput(
            raw,
            price_rows(close, run_id),
            pl.DataFrame(schema=FX_SCHEMA),
            ltv_rows(status, run_id),
            ["a"],
            raw.head(0).with_columns(reasons=pl.lit("x")),
            pl.DataFrame(schema=RESULT_SCHEMA),
        )
        publish_run(con, output, run)


def table_counts(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("raw.market_bars", "staging.prices", "marts.loan_ltv_daily", "meta.runs")
        }


def test_migration_numbers_start_at_one_and_never_repeat() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert all(m.sql.lstrip().startswith(f"-- v{m.version:04d}") for m in migrations)
    assert len({p.name[:5] for p in MIGRATIONS_DIR.glob("*.sql")}) == len(migrations)


def test_repeated_migration_number_is_refused(tmp_path: Path) -> None:
    for name in ("v0001_a.sql", "v0001_b.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(WarehouseError, match="without gaps"):
        load_migrations(tmp_path)


def test_new_warehouse_is_migrated_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with open_writer(path) as con:
        versions = con.execute("SELECT version FROM meta.schema_version").fetchall()
    assert versions == [(m.version,) for m in load_migrations()]


def test_newer_warehouse_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with open_writer(path) as con:
        con.execute("INSERT INTO meta.schema_version VALUES (999, 'future', now())")
    with pytest.raises(WarehouseError, match="schema version 999 is newer"), open_writer(path):
        pass
    with pytest.raises(WarehouseError, match="upgrade marginwatch"), open_reader(path):
        pass


def test_not_a_duckdb_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(WarehouseError, match="cannot open warehouse"), open_writer(path):
        pass


def test_publish_replaces_rows_on_rerun_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    publish(path, 10.0, run_id="r1")
    publish(path, 11.0, run_id="r2")
    assert table_counts(path) == {"raw.market_bars": 2, "staging.prices": 1, "marts.loan_ltv_daily": 1, "meta.runs": 2}
    rows = run_query(path, "SELECT close, run_id FROM staging.prices", 5).rows
    assert rows == [(11.0, "r2")]


def test_failed_publish_leaves_every_table_as_before(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    publish(path, 10.0)
    before = table_counts(path)
    with pytest.raises(duckdb.ConstraintException):
        publish(path, 12.0, status="not-a-level", run_id="r2")  # rejected by the mart's CHECK, last write
    assert table_counts(path) == before
    assert run_query(path, "SELECT close FROM staging.prices", 5).rows == [(10.0,)]


def test_run_lock_times_out_as_busy(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with run_lock(path, 1), pytest.raises(WarehouseBusy, match="another marginwatch run"), run_lock(path, 0.3):
        pass


def test_reader_needs_an_existing_warehouse(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run `marginwatch run` first"), open_reader(tmp_path / "none.duckdb"):
        pass


REFUSED = [
    "DELETE FROM marts.loan_ltv_daily",
    "INSERT INTO meta.runs SELECT * FROM meta.runs",
    "UPDATE staging.prices SET close = 0",
    "DROP TABLE staging.prices",
    "CREATE TABLE x AS SELECT 1",
    "ATTACH '/tmp/other.duckdb' AS other",
    "COPY staging.prices TO '/tmp/out.csv'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 1",
    "PRAGMA enable_profiling",
    "SELECT 1; SELECT 2",
    "EXPORT DATABASE '/tmp/x'",
    "CHECKPOINT",
    "BEGIN TRANSACTION",
    "DETACH other",
    "USE memory",
    "VACUUM",
    "CALL pragma_version()",
    "CREATE SECRET s (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "SELECT 1; DROP TABLE meta.runs",
    "IMPORT DATABASE '/tmp/x'",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_write_and_escape_statements_are_refused_before_running(sql: str) -> None:
    with pytest.raises(InputError) as info:
        check_read_only_sql(sql)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM 'other.parquet'",
    ],
)
def test_selects_cannot_read_files_outside_the_warehouse(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "w.duckdb"
    publish(path, 10.0)
    with pytest.raises(InputError, match="SQL failed"):
        run_query(path, sql, 5)


def test_select_describe_and_cte_queries_run(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    publish(path, 10.0)
    assert run_query(path, "WITH x AS (SELECT ltv FROM marts.loan_ltv_daily) SELECT * FROM x", 5).rows == [(0.3,)]
    assert "ltv" in [r[0] for r in run_query(path, "DESCRIBE marts.loan_ltv_daily", 5).rows]
