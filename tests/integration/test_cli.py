"""The command line through its real entry point: exit codes, one-line errors, output formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from marginwatch import cli
from warehouse.connection import run_lock

pytestmark = pytest.mark.slow
EXE = Path(sys.executable).with_name("marginwatch")


def marginwatch(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would, in `cwd`."""
    environment = {**os.environ, "PREFECT_HOME": str(cwd / ".prefect"), **(env or {})}
    environment.pop("PREFECT_LOGGING_LEVEL", None)  # as a user has it: the CLI's own default
    environment.pop("MARGINWATCH_CONFIG", None)
    environment.pop("MARGINWATCH_WAREHOUSE", None)
    return subprocess.run([str(EXE), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI's `main` in this process (so Yahoo's seam can be patched); return code, out, err."""
    monkeypatch.setattr(sys, "argv", ["marginwatch", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def test_main_job_runs_on_the_embedded_default_and_queries_answer(tmp_path: Path) -> None:
    result = marginwatch("run", "--as-of", "2026-06-30", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC DATA" in result.stdout and "margin_call" in result.stdout
    assert (tmp_path / "marginwatch.duckdb").exists()
    status = marginwatch("status", "--format", "json", cwd=tmp_path)
    latest = {row["loan_id"]: row for row in json.loads(status.stdout)}
    assert set(latest) == {"sbg-arm-usd", "sbg-arm-jpy"}
    assert {row["as_of_date"] for row in latest.values()} == {"2026-06-30"}
    assert all(row["source"] == "synthetic" for row in latest.values())
    query = marginwatch(
        "sql",
        "SELECT status, count(*) AS n FROM marts.loan_ltv_daily GROUP BY 1 ORDER BY 1",
        "--format",
        "csv",
        cwd=tmp_path,
    )
    lines = query.stdout.splitlines()
    assert lines[0] == "status,n" and [line.split(",")[0] for line in lines[1:]] == ["margin_call", "ok", "warning"]
    refused = marginwatch("sql", "DROP TABLE marts.loan_ltv_daily", cwd=tmp_path)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        == "marginwatch: error: SQL refused: DROP statements are not allowed; only SELECT queries run here"
    )


def test_invalid_config_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    book = tmp_path / "book.toml"
    book.write_text(
        '[[loans]]\nid = "x"\nborrower = "B"\ncurrency = "USD"\nprincipal = 1\nannual_rate = 0\n'
        "accrual_start = 2025-01-02\n[loans.levels]\nwarning = 0.6\nmargin_call = 0.5\nliquidation = 0.7\n"
        'cure_target = 0.3\n[[loans.collateral]]\nsymbol = "ARM"\nshares = 1\n'
    )
    result = marginwatch("--config", str(book), "run", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"marginwatch: error: {book}: loan 'x': field levels: levels must satisfy")
    assert not (tmp_path / "marginwatch.duckdb").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--as-of", "2026-13-01"],
        ["backfill"],
        ["run", "--source", "ftp"],
        ["status", "--format", "xml"],
        ["sql"],
        ["frobnicate"],
    ],
    ids=["bad-date", "missing-start", "unknown-source", "unknown-format", "missing-query", "unknown-command"],
)
def test_bad_arguments_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = marginwatch(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "marginwatch.duckdb").exists()


def test_status_without_a_warehouse_says_what_to_do(tmp_path: Path) -> None:
    result = marginwatch("status", cwd=tmp_path)
    assert result.returncode == 2
    assert "no warehouse here yet; run `marginwatch run` first" in result.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_busy_warehouse_exits_5_after_the_configured_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], book_path: Path
) -> None:
    book = tmp_path / "book.toml"
    book.write_text(book_path.read_text().replace("lock_timeout_seconds = 60", "lock_timeout_seconds = 0.5"))
    warehouse = tmp_path / "w.duckdb"
    with run_lock(warehouse, 1):
        code, _, err = in_process(monkeypatch, capsys, "--config", str(book), "--warehouse", str(warehouse), "run")
    assert code == 5
    assert err.strip().endswith("another marginwatch run holds the warehouse; gave up after waiting 0.5s")


@pytest.mark.usefixtures("prefect_harness")
def test_yahoo_unreachable_exits_4_naming_the_symbol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    import yfinance.data

    def unreachable(self: object, url: str, params: object = None, timeout: float = 30) -> None:
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(yfinance.data.YfData, "get", unreachable)
    warehouse = tmp_path / "w.duckdb"
    code, _, err = in_process(
        monkeypatch, capsys, "--warehouse", str(warehouse), "run", "--source", "yfinance", "--as-of", "2026-03-02"
    )
    assert code == 4
    assert err.strip().splitlines()[-1] == (
        "marginwatch: error: source unavailable for ARM: network unreachable (DNS lookup failed)"
    )
    assert not warehouse.exists()


# The command line with Yahoo unreachable and a Prefect API that takes a second to accept each event.
SLOW_EVENTS_CLI = """
import asyncio, socket, sys

from marginwatch.config import set_prefect_defaults

set_prefect_defaults()  # as the command line has them before Prefect loads
import yfinance.data
from prefect.events.worker import EventsWorker


def unreachable(self, url, params=None, timeout=30):
    raise socket.gaierror(-3, "Temporary failure in name resolution")


async def slow(self, event, handle=EventsWorker._handle):
    await asyncio.sleep(1)
    await handle(self, event)


yfinance.data.YfData.get = unreachable
EventsWorker._handle = slow
from marginwatch.cli import main

sys.argv = ["marginwatch", *sys.argv[1:]]
main()
"""


def test_the_error_stays_the_last_line_while_prefect_sends_its_last_events(tmp_path: Path) -> None:
    """Prefect warns on stderr while a slow API takes a failed run's events: above the error line, not below."""
    script = tmp_path / "slow_events.py"
    script.write_text(SLOW_EVENTS_CLI)
    environment = {**os.environ, "PREFECT_HOME": str(tmp_path / ".prefect")}
    environment.pop("PREFECT_LOGGING_LEVEL", None)
    environment.pop("PREFECT_API_URL", None)
    args = ["--warehouse", "w.duckdb", "run", "--source", "yfinance", "--as-of", "2026-03-02"]
    result = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert any("Still processing items" in line for line in lines), result.stderr  # the events were still queued
    assert lines[-1] == "marginwatch: error: source unavailable for ARM: network unreachable (DNS lookup failed)"


def test_a_large_book_is_validated_once_across_the_command_its_flow_and_later_queries(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    prefect_harness: None,
    parses: list[Path],
) -> None:
    import datetime as dt

    from benchmarks.scale_book import book_toml

    monkeypatch.setenv("MARGINWATCH_CACHE_DIR", str(tmp_path / "cache"))
    book = tmp_path / "book.toml"
    book.write_text(book_toml(700, 60, dt.date(2026, 3, 2)), encoding="utf-8")  # about 330 KB: a kept size
    where = ("--config", str(book), "--warehouse", str(tmp_path / "w.duckdb"))
    code, _, err = in_process(monkeypatch, capsys, *where, "run", "--as-of", "2026-03-06")
    assert code == 0, err
    code, out, err = in_process(monkeypatch, capsys, *where, "status", "--format", "json")
    assert code == 0, err
    latest = json.loads(out)
    assert len(latest) == 700 and {row["as_of_date"] for row in latest} == {"2026-03-06"}
    assert parses == [book]  # the command's check parsed it; the flow and the query read it back
