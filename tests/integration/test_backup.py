"""Backups: the daily flow keeps the newest N, `backup` and `restore` work under the lock, corruption points to one."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

from flows.daily import daily
from marginwatch import cli
from marginwatch.config import EMBEDDED_BOOK, load_book
from tests.integration.conftest import rows
from warehouse.backup import list_backups

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
D = dt.date.fromisoformat


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["marginwatch", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


@pytest.fixture
def book_path(tmp_path: Path) -> Path:
    path = tmp_path / "book.toml"
    text = EMBEDDED_BOOK.read_text().replace('file = "marginwatch-alerts.log"', f'file = "{tmp_path / "alerts.log"}"')
    path.write_text(text.replace("lock_timeout_seconds = 60", "lock_timeout_seconds = 60\nbackups_kept = 2"))
    return path


def test_daily_flow_keeps_the_newest_backups(tmp_path: Path, book_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    for day in ("2026-03-02", "2026-03-03", "2026-03-04"):
        daily(load_book(book_path), str(warehouse), "synthetic", D(day))
    backups = list_backups(warehouse)
    assert len(backups) == 2
    assert rows(backups[-1], "SELECT max(as_of_date) FROM marts.loan_ltv_daily") == [(D("2026-03-04"),)]
    assert rows(backups[0], "SELECT max(as_of_date) FROM marts.loan_ltv_daily") == [(D("2026-03-03"),)]


def test_restore_brings_back_a_backup_and_corruption_points_to_it(
    tmp_path: Path, book_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = tmp_path / "w.duckdb"
    common = ["--config", str(book_path), "--warehouse", str(warehouse)]
    daily(load_book(book_path), str(warehouse), "synthetic", D("2026-03-02"))
    code, out, _ = run_cli(monkeypatch, capsys, *common, "backup", "--dir", str(tmp_path / "kept"))
    assert code == 0
    kept = Path(out.split("backup: ", 1)[1].strip())
    daily(load_book(book_path), str(warehouse), "synthetic", D("2026-03-06"))
    assert rows(warehouse, "SELECT max(as_of_date) FROM marts.loan_ltv_daily") == [(D("2026-03-06"),)]

    code, out, _ = run_cli(monkeypatch, capsys, *common, "restore", str(kept))
    assert code == 0 and "the replaced warehouse is" in out
    assert rows(warehouse, "SELECT max(as_of_date) FROM marts.loan_ltv_daily") == [(D("2026-03-02"),)]
    assert (tmp_path / "w.duckdb.before-restore").exists()

    warehouse.write_bytes(b"\x00garbage" * 4096)  # a truncated or overwritten file
    code, _, err = run_cli(monkeypatch, capsys, *common, "status")
    assert code == 6
    assert "cannot open warehouse" in err and "the latest backup is" in err and "-backups/w-" in err


def test_restore_refuses_a_file_that_is_not_a_warehouse(
    tmp_path: Path, book_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database")
    code, _, err = run_cli(
        monkeypatch, capsys, "--config", str(book_path), "--warehouse", str(tmp_path / "w.duckdb"), "restore", str(junk)
    )
    assert code == 2 and "not a usable warehouse backup" in err
    assert not (tmp_path / "w.duckdb").exists()
