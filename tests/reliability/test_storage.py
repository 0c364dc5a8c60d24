"""Storage faults: a read-only or full filesystem (a small tmpfs) fails clearly and leaves the warehouse as it was.

Mounting needs root; elsewhere these tests skip and say so. (A truncated or foreign warehouse file,
with its pointer to the latest backup, is proven in tests/integration/test_backup.py.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.runner import cli, content

pytestmark = [pytest.mark.slow, pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]
SEED = ("backfill", "--start", "2026-03-02", "--end", "2026-03-20", "--source", "synthetic")
RUN = ("run", "--as-of", "2026-03-24", "--source", "synthetic")


def mount(point: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *options, str(point)], capture_output=True, text=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs mounted for the test (root only), unmounted after."""
    point = tmp_path / "mnt"
    point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    made = mount(point, "-t", "tmpfs", "-o", "size=64m", "tmpfs")
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def without_failure_notices(tables: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    """Return the content without `run_failed` notices (alert keys `*/...`), which a failed run may record."""
    notice = ("marts.alerts", "meta.alert_outbox")
    return {
        name: [r for r in rows if not (name in notice and str(r[0]).startswith("*/"))] for name, rows in tables.items()
    }


def seeded_in(folder: Path, work: Path) -> Path:
    """Backfill a warehouse in `work`, copy it into `folder`, and return the copy's path."""
    done = cli(SEED, work)
    assert done.returncode == 0, done.stderr
    target = folder / "w.duckdb"
    shutil.copy(work / "w.duckdb", target)
    return target


def test_a_read_only_filesystem_fails_with_exit_6_and_reads_still_work(small_fs: Path, tmp_path: Path) -> None:
    warehouse = seeded_in(small_fs, tmp_path)
    before = content(warehouse)
    assert mount(small_fs, "-o", "remount,ro").returncode == 0
    failed = cli(RUN, tmp_path, warehouse=str(warehouse))
    assert failed.returncode == 6, failed.stderr
    line = failed.stderr.strip().splitlines()[-1]
    assert line == f"marginwatch: error: {warehouse}: cannot take the run lock w.duckdb.lock: Read-only file system"
    assert content(warehouse) == before
    status = cli(("status", "--format", "csv"), tmp_path, warehouse=str(warehouse))
    assert status.returncode == 0 and "2026-03-20" in status.stdout


def test_a_full_disk_fails_with_exit_6_publishes_nothing_and_a_rerun_with_room_succeeds(
    small_fs: Path, tmp_path: Path
) -> None:
    warehouse = seeded_in(small_fs, tmp_path)
    before = content(warehouse)
    room = warehouse.stat().st_size + 8_192  # the file fits; the run's write-ahead log does not
    assert mount(small_fs, "-o", f"remount,size={room}").returncode == 0
    failed = cli(RUN, tmp_path, warehouse=str(warehouse))
    assert failed.returncode == 6, failed.stderr
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith(
        f"marginwatch: error: {warehouse}: cannot write to the warehouse, the transaction was rolled back: "
    )
    assert "No space left on device" in line
    assert mount(small_fs, "-o", "remount,size=64m").returncode == 0
    assert without_failure_notices(content(warehouse)) == before  # a failed run may leave only its notice
    again = cli(RUN, tmp_path, warehouse=str(warehouse))
    assert again.returncode == 0, again.stderr
    assert max(row[1] for row in content(warehouse)["marts.loan_ltv_daily"]).isoformat() == "2026-03-24"
