"""Connections to the warehouse file: one writer at a time under a run lock, many readers."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from marginwatch.errors import InputError, WarehouseBusy, WarehouseError
from warehouse.migrate import check_version, load_migrations, migrate

_POLL_SECONDS = 0.1
READ_ONLY_SETTINGS = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


def lock_path(path: Path) -> Path:
    """Return the run-lock file that sits beside the warehouse file."""
    return path.with_name(path.name + ".lock")


@contextmanager
def run_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold the warehouse's run lock, waiting up to `timeout` seconds; WarehouseBusy after that."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # a read-only or full filesystem, or no permission: nothing was written
        raise WarehouseError(f"{path}: cannot take the run lock {lock_path(path).name}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(
                        f"{path}: another marginwatch run holds the warehouse; gave up after waiting {timeout:g}s"
                    ) from None
                time.sleep(_POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# DuckDB's own default is 80% of the machine's memory: a run publishing a whole book's backfill
# would keep that much of the inserted data in its buffers beside the run's frames. Bounded, it
# writes them out (spilling to `<warehouse>.tmp` if a statement must) and the run stays in budget.
WRITER_MEMORY_LIMIT = "1GB"


def _connect(path: Path, timeout: float, **kwargs: object) -> duckdb.DuckDBPyConnection:
    """Open the file, retrying while another process has it open for writing."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return duckdb.connect(str(path), **kwargs)  # type: ignore[arg-type]
        except duckdb.IOException as exc:
            message = str(exc)
            if "lock" not in message.lower():
                raise WarehouseError(
                    f"{path}: cannot open warehouse: {_first_line(message)}{_backup_hint(path)}"
                ) from None
            if time.monotonic() >= deadline:
                raise WarehouseBusy(f"{path}: warehouse is busy (held by another process) after {timeout:g}s") from None
            time.sleep(_POLL_SECONDS)
        except duckdb.Error as exc:
            raise WarehouseError(
                f"{path}: cannot open warehouse: {_first_line(str(exc))}{_backup_hint(path)}"
            ) from None


def _backup_hint(path: Path) -> str:
    from warehouse.backup import list_backups

    backups = list_backups(path)
    return f"; the latest backup is {backups[-1]} (`marginwatch restore` it)" if backups else ""


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


@contextmanager
def open_writer(path: Path, timeout: float = 60.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield a read-write connection with the schema migrated; the caller holds the run lock."""
    con = _connect(path, timeout)
    try:
        con.execute(f"SET memory_limit = '{WRITER_MEMORY_LIMIT}'")
        migrate(con, path)
        yield con
    except (duckdb.IOException, duckdb.FatalException, duckdb.TransactionException) as exc:
        if not _is_storage_failure(exc):
            raise
        raise WarehouseError(
            f"{path}: cannot write to the warehouse, the transaction was rolled back: {_first_line(str(exc))}"
        ) from None
    finally:
        con.close()


def _is_storage_failure(exc: Exception) -> bool:
    """Return whether a DuckDB error comes from the disk (full, read-only, failing) rather than the SQL."""
    message = str(exc).lower()
    return isinstance(exc, duckdb.IOException) or any(
        sign in message for sign in ("could not write", "no space left", "read-only file system", "input/output error")
    )


@contextmanager
def open_reader(path: Path, timeout: float = 60.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield a read-only connection that cannot touch files, extensions or settings."""
    if not path.exists():
        raise InputError(f"{path}: no warehouse here yet; run `marginwatch run` first")
    con = _connect(path, timeout, read_only=True, config=dict(READ_ONLY_SETTINGS))
    try:
        check_version(con, path, load_migrations())
        yield con
    finally:
        con.close()
