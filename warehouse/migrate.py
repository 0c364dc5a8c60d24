"""Numbered SQL migrations (`vNNNN_name.sql`) recorded in `meta.schema_version`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from marginwatch.errors import WarehouseError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^v(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Return the migrations in version order; numbers must start at 1 and never repeat or skip."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise WarehouseError(f"{path}: migration file names must look like v0001_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise WarehouseError(f"{directory}: migration numbers must run 1, 2, 3... without gaps, got {versions}")
    return found


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """Return the schema version recorded in the warehouse (0 for an empty one)."""
    # fetchall, not fetchone: DuckDB refuses new work while a result is half read.
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'meta' AND table_name = 'schema_version'"
    ).fetchall()
    if exists[0][0] == 0:
        return 0
    return int(con.execute("SELECT coalesce(max(version), 0) FROM meta.schema_version").fetchall()[0][0])


def check_version(con: duckdb.DuckDBPyConnection, path: Path, migrations: list[Migration]) -> int:
    """Return the warehouse version, refusing a warehouse newer than this code."""
    version = current_version(con)
    latest = migrations[-1].version if migrations else 0
    if version > latest:
        raise WarehouseError(
            f"{path}: warehouse schema version {version} is newer than this marginwatch "
            f"(knows up to {latest}); upgrade marginwatch to open it"
        )
    return version


def migrate(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Apply pending migrations, each in its own transaction; return the resulting version."""
    migrations = load_migrations()
    version = check_version(con, path, migrations)
    for migration in migrations[version:]:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("CREATE SCHEMA IF NOT EXISTS meta")
            con.execute(
                "CREATE TABLE IF NOT EXISTS meta.schema_version "
                "(version INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            con.execute(migration.sql)
            con.execute(
                "INSERT INTO meta.schema_version VALUES (?, ?, now())",
                [migration.version, migration.name],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        version = migration.version
    return version
