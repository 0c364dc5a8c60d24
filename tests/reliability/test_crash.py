"""Crash safety: a run killed by SIGKILL at every named point leaves a sound warehouse, and a rerun converges.

Each case copies one seeded warehouse, runs the real CLI in a child process that kills itself at
one point (`MARGINWATCH_CRASH_AT`), checks the invariants on what is left, reruns the same command
and compares the business content of every table with a clean run of that command.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from marginwatch.faults import POINTS
from tests.reliability.runner import cli, content

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]

DAILY = ("run", "--as-of", "2026-03-24", "--source", "synthetic")
BACKFILL = ("backfill", "--start", "2026-03-23", "--end", "2026-03-27", "--source", "synthetic")
BACKFILL_POINTS = ("run:fetched", "run:risk", "load:prices", "load:ltv", "load:before-commit", "run:committed")
INVARIANTS = {
    "an as-of date is complete for every loan or absent": """
        SELECT as_of_date FROM marts.loan_ltv_daily GROUP BY 1 HAVING count(DISTINCT loan_id) <> 2""",
    "risk and stress rows exist exactly for LTV rows": """
        SELECT loan_id, as_of_date FROM marts.loan_ltv_daily
        WHERE (loan_id, as_of_date) NOT IN (SELECT (loan_id, as_of_date) FROM marts.loan_risk_daily)
           OR (loan_id, as_of_date) NOT IN (SELECT (loan_id, as_of_date) FROM marts.loan_stress_daily)
        UNION ALL
        SELECT loan_id, as_of_date FROM marts.loan_risk_daily
        WHERE (loan_id, as_of_date) NOT IN (SELECT (loan_id, as_of_date) FROM marts.loan_ltv_daily)""",
    "no loan alert without its LTV row": """
        SELECT alert_key FROM marts.alerts WHERE kind IN ('level', 'recovery', 'reminder')
          AND (loan_id, as_of_date) NOT IN (SELECT (loan_id, as_of_date) FROM marts.loan_ltv_daily)""",
    "every delivery belongs to an alert and every alert has its deliveries": """
        SELECT alert_key FROM meta.alert_outbox WHERE alert_key NOT IN (SELECT alert_key FROM marts.alerts)
        UNION ALL
        SELECT alert_key FROM marts.alerts WHERE alert_key NOT IN (SELECT alert_key FROM meta.alert_outbox)""",
    "a succeeded run's sessions are all published": """
        SELECT r.run_id FROM meta.runs r WHERE r.status = 'succeeded' AND r.as_of_end NOT IN
          (SELECT as_of_date FROM marts.loan_ltv_daily)""",
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[Path]:
    """A folder with a warehouse backfilled through 2026-03-20, before the synthetic margin call."""
    folder = tmp_path_factory.mktemp("seed")
    done = cli(("backfill", "--start", "2026-03-02", "--end", "2026-03-20", "--source", "synthetic"), folder)
    assert done.returncode == 0, done.stderr
    yield folder


@pytest.fixture(scope="module")
def clean(seeded: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], dict[str, list]]:
    """The content each command leaves when nothing goes wrong."""
    out = {}
    for args in (DAILY, BACKFILL):
        folder = tmp_path_factory.mktemp("clean")
        shutil.copytree(seeded, folder, dirs_exist_ok=True)
        done = cli(args, folder)
        assert done.returncode == 0, done.stderr
        out[args] = content(folder / "w.duckdb")
    return out


CASES = [(DAILY, point) for point in POINTS] + [(BACKFILL, point) for point in BACKFILL_POINTS]


@pytest.mark.parametrize(("args", "point"), CASES, ids=[f"{a[0]}-{p}" for a, p in CASES])
def test_a_kill_leaves_a_sound_warehouse_and_a_rerun_converges(
    args: tuple[str, ...], point: str, seeded: Path, clean: dict[tuple[str, ...], dict[str, list]], tmp_path: Path
) -> None:
    shutil.copytree(seeded, tmp_path, dirs_exist_ok=True)
    killed = cli(args, tmp_path, crash_at=point)
    assert killed.returncode == -signal.SIGKILL, f"{point} was never reached: {killed.stderr[-500:]}"
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        broken = {name: con.execute(sql).fetchall() for name, sql in INVARIANTS.items()}
    assert {name: found for name, found in broken.items() if found} == {}
    rerun = cli(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert content(warehouse) == clean[args]
    assert not list(tmp_path.glob("w-backups/*.partial")), "a half-copied backup was left behind"
    sent = (tmp_path / "marginwatch-alerts.log").read_text(encoding="utf-8")
    keys = [line.split(": ", 1)[1] for line in sent.splitlines() if line.startswith("Alert key: ")]
    expected = {key for key, _, status in clean[args]["meta.alert_outbox"] if status == "delivered"}
    assert set(keys) >= expected  # nothing lost; a kill between sending and recording may repeat one
    repeats = len(keys) - len(set(keys))
    assert repeats == (1 if point == "deliver:one-sent" else 0)
