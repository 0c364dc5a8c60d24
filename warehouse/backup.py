"""Backups of the warehouse file: copies taken under the run lock, the newest N kept, restore in place."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import duckdb

from marginwatch.errors import InputError, WarehouseError
from marginwatch.faults import crash_point
from warehouse.migrate import check_version, load_migrations


def backup_dir(warehouse: Path) -> Path:
    """Return where the warehouse's backups go: `<name>-backups/` beside it."""
    return warehouse.with_name(f"{warehouse.stem}-backups")


def list_backups(warehouse: Path, directory: Path | None = None) -> list[Path]:
    """Return the warehouse's backups, oldest first."""
    folder = directory or backup_dir(warehouse)
    return sorted(folder.glob(f"{warehouse.stem}-*.duckdb")) if folder.is_dir() else []


def take_backup(
    warehouse: Path, keep: int, now: dt.datetime, directory: Path | None = None, timeout: float = 60.0
) -> Path:
    """Copy the (closed, checkpointed) warehouse file to a new backup; keep the newest `keep`.

    The caller holds the run lock, so no run writes while the copy is made.
    """
    if not warehouse.exists():
        raise InputError(f"{warehouse}: no warehouse to back up")
    folder = directory or backup_dir(warehouse)
    target = folder / f"{warehouse.stem}-{now:%Y%m%dT%H%M%S%fZ}.duckdb"
    partial = target.with_suffix(".partial")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f"{warehouse.stem}-*.partial"):
            stale.unlink()  # left by a run killed while copying
        from warehouse.connection import _connect  # waits out a reader holding the file, like every writer

        with _connect(warehouse, timeout) as con:
            con.execute("CHECKPOINT")  # everything in the one file, nothing left in the WAL
        shutil.copy2(warehouse, partial)
        crash_point("backup:copying")
        os.replace(partial, target)  # a backup is whole or absent
    except (OSError, duckdb.IOException) as exc:
        partial.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise WarehouseError(f"{target}: backup failed, the warehouse itself is unaffected: {reason}") from None
    for old in list_backups(warehouse, folder)[:-keep] if keep > 0 else []:
        old.unlink()
    return target


def restore_backup(warehouse: Path, backup: Path) -> Path:
    """Replace the warehouse with `backup` after checking it opens; the replaced file is kept aside."""
    try:
        with duckdb.connect(str(backup), read_only=True) as con:
            check_version(con, backup, load_migrations())
    except WarehouseError:
        raise
    except (duckdb.Error, OSError) as exc:
        raise InputError(f"{backup}: not a usable warehouse backup: {str(exc).splitlines()[0]}") from None
    aside = warehouse.with_name(f"{warehouse.name}.before-restore")
    staging = warehouse.with_name(f"{warehouse.name}.restoring")
    shutil.copy2(backup, staging)
    if warehouse.exists():
        os.replace(warehouse, aside)
    wal = warehouse.with_name(f"{warehouse.name}.wal")
    if wal.exists():
        os.replace(wal, aside.with_name(f"{aside.name}.wal"))
    os.replace(staging, warehouse)
    return aside
