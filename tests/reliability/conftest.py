"""Shared pieces of the reliability suite: table checksums, seeded warehouses, the replayed Yahoo, CLI runners."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from marginwatch.config import EMBEDDED_BOOK
from tests.integration.conftest import Mailbox, Webhook
from tests.integration.test_cli import in_process
from tests.reliability.yahoo_replay import FAULT_ENV, Fault, replay_get

D = dt.date.fromisoformat
REPLAY_SCRIPT = Path(__file__).with_name("yahoo_replay.py")
SEEDED_AS_OF = D("2026-01-09")  # the good run every fault test starts from
NEXT_SESSION = D("2026-01-12")  # the session the faulty run asks for
Checksums = dict[str, tuple[int, int]]


def table_checksums(path: Path) -> Checksums:
    """Return (row count, order-free hash of all rows) for every table of a warehouse file."""
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL").fetchall()
        sums: Checksums = {}
        for schema, table in tables:
            found = con.execute(f"SELECT count(*), coalesce(sum(hash(t)), 0) FROM {schema}.{table} t").fetchone()
            sums[f"{schema}.{table}"] = (int(found[0]), int(found[1])) if found else (0, 0)
        return sums


def changed_tables(before: Checksums, after: Checksums) -> set[str]:
    """Return the tables whose rows differ (or that appeared or vanished)."""
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def added_rows(before: list[tuple[object, ...]], after: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Return the rows of `after` not in `before`, asserting that no row of `before` went missing."""
    assert all(row in after for row in before), "rows present before the run are gone"
    return [row for row in after if row not in before]


def one_error_line(err: str) -> str:
    """Return the CLI's error line, asserting that it is all the command printed on stderr.

    In process, stderr holds only what the CLI printed (Prefect's console handler keeps the stream it
    started with); the real-process tests check the whole stderr of a user's command.
    """
    assert err.startswith("marginwatch: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    return err.removesuffix("\n")


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own folder: the demo file channel and relative paths land there."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def api_url(prefect_harness: None) -> str:
    """The test harness's Prefect API, so CLI subprocesses skip starting a temporary server each."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run the CLI's `main` in this process; return (exit code, stdout, stderr)."""
    return lambda *args: in_process(monkeypatch, capsys, *(str(a) for a in args))


@pytest.fixture
def yahoo(monkeypatch: pytest.MonkeyPatch) -> Callable[[Fault], list[str]]:
    """Answer yfinance's requests in this process from the replay, with the fault given.

    Returns the list the symbol of every request made from then on is appended to.
    """
    from yfinance.data import YfData

    def serve(fault: Fault) -> list[str]:
        requests: list[str] = []
        monkeypatch.setattr(YfData, "get", replay_get(fault, requests))
        return requests

    return serve


def replayed_marginwatch(
    *args: str, cwd: Path, fault: Fault, api: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a new process with Yahoo replayed (and `fault` injected), as a user would."""
    env = _user_env(cwd, api) | {FAULT_ENV: fault.to_env()}
    command = [sys.executable, str(REPLAY_SCRIPT), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start_replayed(*args: str, cwd: Path, fault: Fault, api: str) -> subprocess.Popen[str]:
    """Start the real CLI with Yahoo replayed, without waiting for it."""
    env = _user_env(cwd, api) | {FAULT_ENV: fault.to_env()}
    command = [sys.executable, str(REPLAY_SCRIPT), *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _user_env(cwd: Path, api: str) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(cwd / ".prefect"), "PREFECT_API_URL": api}
    for name in ("PREFECT_LOGGING_LEVEL", "MARGINWATCH_CONFIG", "MARGINWATCH_WAREHOUSE"):
        env.pop(name, None)  # as a user has them: the CLI's own defaults
    return env


@pytest.fixture(scope="session")
def yahoo_seeded_template(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """A warehouse holding one good replayed-Yahoo daily run of the default book through SEEDED_AS_OF."""
    from yfinance.data import YfData

    from flows.daily import daily

    folder = tmp_path_factory.mktemp("yahoo-seeded")
    warehouse = folder / "seeded.duckdb"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(YfData, "get", replay_get(Fault("good")))
        daily(str(EMBEDDED_BOOK), str(warehouse), "yfinance", SEEDED_AS_OF)
    return warehouse


@pytest.fixture
def yahoo_seeded(yahoo_seeded_template: Path, tmp_path: Path) -> Path:
    """A copy of the seeded warehouse, in the test's folder."""
    target = tmp_path / "w.duckdb"
    shutil.copy(yahoo_seeded_template, target)
    return target


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.controller.stop()
