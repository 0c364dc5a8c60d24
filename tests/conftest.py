"""Shared fixtures: a Prefect test harness for the session, paths to the shipped book and data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session", autouse=True)
def private_book_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep validated books in the session's temporary folder, not the user's cache (children inherit it)."""
    with pytest.MonkeyPatch.context() as session:
        session.setenv("MARGINWATCH_CACHE_DIR", str(tmp_path_factory.mktemp("marginwatch-cache")))
        yield


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Run every flow of the session against one temporary Prefect server and database."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def book_path() -> Path:
    """Return the embedded default loan book."""
    from marginwatch.config import EMBEDDED_BOOK

    return EMBEDDED_BOOK


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record each full parse and validation of a book file by `marginwatch.book_cache.read_book`."""
    from marginwatch import book_cache

    seen: list[Path] = []
    parse = book_cache.parse_book

    def counted(path: Path, data: bytes) -> object:
        seen.append(path)
        return parse(path, data)

    monkeypatch.setattr(book_cache, "parse_book", counted)
    return seen
