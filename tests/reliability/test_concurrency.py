"""Two runs started together on one warehouse, in real processes: one proceeds, the other waits and exits 5.

The run that takes the lock is held inside its ARM fetch (the replayed Yahoo answers only when the
test says so), so the other one waits out `lock_timeout_seconds` while a run is certainly going on;
meanwhile `marginwatch sql` and `status` answer from the warehouse, and keep answering while the run
finishes and publishes. The run that gave up never held the warehouse, so it leaves no trace in it
(no `meta.runs` row, no `run_failed` notice). A reader that holds the file when the daily run takes
its backup only delays the backup.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from marginwatch.config import EMBEDDED_BOOK
from tests.integration.conftest import rows
from tests.integration.test_cli import marginwatch
from tests.reliability.conftest import NEXT_SESSION, SEEDED_AS_OF, added_rows, start_replayed
from tests.reliability.yahoo_replay import Fault

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
RUNS = "SELECT flow, status, as_of_end, error FROM meta.runs"
LTV_ROWS = "SELECT count(*) AS n FROM marts.loan_ltv_daily"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_two_runs_started_together_one_proceeds_the_other_exits_5_and_readers_keep_answering(
    yahoo_seeded: Path, api_url: str, tmp_path: Path
) -> None:
    text = EMBEDDED_BOOK.read_text()
    # No backup at the end: a reader at that very moment is the next test's subject.
    runs_book = text.replace("lock_timeout_seconds = 60", "lock_timeout_seconds = 2\nbackups_kept = 0")
    (tmp_path / "book.toml").write_text(runs_book)
    (tmp_path / "reader.toml").write_text(text)  # readers wait out a write phase with the default 60 s
    seeded_rows, seeded_runs = rows(yahoo_seeded, LTV_ROWS)[0][0], rows(yahoo_seeded, RUNS)
    started, release = tmp_path / "fetching", tmp_path / "release"
    fault = Fault("hold", started=str(started), release=str(release))
    args = ("--config", "book.toml", "--warehouse", "w.duckdb", "run", "--source", "yfinance")
    runs = [start_replayed(*args, "--as-of", str(NEXT_SESSION), cwd=tmp_path, fault=fault, api=api_url) for _ in "ab"]

    def read(*query: str) -> subprocess.CompletedProcess[str]:
        return marginwatch("--config", "reader.toml", "--warehouse", "w.duckdb", *query, cwd=tmp_path)

    try:
        wait_until(lambda: started.exists() and any(p.poll() is not None for p in runs), 180, "one run to give up")
        loser = next(p for p in runs if p.poll() is not None)
        winner = next(p for p in runs if p is not loser)
        _, err = loser.communicate()
        assert (loser.returncode, winner.poll()) == (5, None), err
        assert err == (
            "marginwatch: error: w.duckdb: another marginwatch run holds the warehouse; gave up after waiting 2s\n"
        )

        during = read("sql", LTV_ROWS, "--format", "json")
        assert during.returncode == 0 and json.loads(during.stdout) == [{"n": seeded_rows}], during.stderr
        status = read("status", "--format", "json")
        assert status.returncode == 0, status.stderr
        assert {row["as_of_date"] for row in json.loads(status.stdout)} == {str(SEEDED_AS_OF)}

        answers: list[subprocess.CompletedProcess[str]] = []
        finished = threading.Event()
        reader = threading.Thread(target=read_until, args=(read, finished, answers))
        reader.start()
        release.touch()
        _, err = winner.communicate(timeout=180)
        finished.set()
        reader.join(60)
        assert winner.returncode == 0, err
        assert answers and all(a.returncode == 0 for a in answers), [a.stderr for a in answers]
    finally:
        release.touch()
        for process in runs:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert added_rows(seeded_runs, rows(yahoo_seeded, RUNS)) == [("daily", "succeeded", NEXT_SESSION, None)]
    assert rows(yahoo_seeded, "SELECT count(*) FROM marts.alerts WHERE kind = 'run_failed'") == [(0,)]
    assert rows(yahoo_seeded, f"SELECT count(*) FROM marts.loan_ltv_daily WHERE as_of_date = '{NEXT_SESSION}'") == [
        (2,)
    ]


def read_until(
    read: Callable[..., subprocess.CompletedProcess[str]],
    finished: threading.Event,
    answers: list[subprocess.CompletedProcess[str]],
) -> None:
    """Query the warehouse again and again until the run has finished, then once more."""
    while not finished.wait(0.2):  # a pause between queries: the run needs the CPU too
        answers.append(read("sql", LTV_ROWS))
    answers.append(read("sql", LTV_ROWS))


@pytest.mark.usefixtures("prefect_harness")
def test_a_reader_holding_the_file_when_the_backup_starts_does_not_fail_the_run(
    yahoo_seeded: Path,
    yahoo: Callable[[Fault], list[str]],
    cli: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.run

    take_backup = flows.run.take_backup

    def backup_while_read(warehouse: Path, *args: object, **kwargs: object) -> Path:
        with hold_read_only(warehouse, seconds=1.5):
            return take_backup(warehouse, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(flows.run, "take_backup", backup_while_read)
    yahoo(Fault("good"))
    code, _, err = cli(
        "--config", EMBEDDED_BOOK, "--warehouse", yahoo_seeded, "run", "--source", "yfinance", "--as-of", NEXT_SESSION
    )
    assert (code, err) == (0, "")


@contextmanager
def hold_read_only(warehouse: Path, seconds: float) -> Iterator[None]:
    """Have another process (any DuckDB client) hold the file read-only for `seconds` from now."""
    hold = (
        f"import duckdb, time; con = duckdb.connect({str(warehouse)!r}, read_only=True); "
        f"print('open', flush=True); time.sleep({seconds})"
    )
    reader = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline()  # the file is open
        yield
    finally:
        reader.communicate(timeout=60)
