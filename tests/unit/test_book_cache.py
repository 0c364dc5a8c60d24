"""A large book is validated once and read back from the cache until its file or the validating code changes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from benchmarks.scale_book import book_toml
from marginwatch import book as book_module
from marginwatch import book_cache
from marginwatch.book import BookFrames
from marginwatch.book_cache import read_book
from marginwatch.config import ConfigError, load_book

LOANS = 700  # about 330 KB of TOML: over the cache's threshold


@pytest.fixture(scope="module")
def large_text() -> str:
    text = book_toml(LOANS, 60, dt.date(2024, 1, 2))
    text = text.replace("backups_kept = 0", 'backups_kept = 3\nreports_dir = "desk-reports"')
    return text + '\n[[channels]]\nname = "desk"\nfile = "alerts.jsonl"\nmin_level = "margin_call"\n'


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MARGINWATCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "books"


def write(tmp_path: Path, text: str, name: str = "book.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert len(text.encode()) >= book_cache.MIN_BYTES or "small" in name
    return path


def assert_same(found: BookFrames, expected: BookFrames) -> None:
    assert found.settings == expected.settings
    assert found.channels == expected.channels
    assert_frame_equal(found.loans, expected.loans)
    assert_frame_equal(found.collateral, expected.collateral)


def test_a_large_book_is_validated_once_and_read_back_the_same(
    tmp_path: Path, large_text: str, cache: Path, parses: list[Path]
) -> None:
    path = write(tmp_path, large_text)
    expected = BookFrames.of(load_book(path))
    first, second = read_book(path), read_book(path)
    assert len(parses) == 1
    assert len(list(cache.glob("*.zip"))) == 1
    for found in (first, second):
        assert_same(found, expected)
    assert second.settings.backups_kept == 3 and second.settings.reports_dir == Path("desk-reports")
    assert [c.name for c in second.channels] == ["desk"] and second.channels[0].min_level == "margin_call"
    assert second.loans.height == LOANS and second.max_window == 20


def test_an_edited_book_is_validated_afresh(tmp_path: Path, large_text: str, cache: Path, parses: list[Path]) -> None:
    path = write(tmp_path, large_text)
    read_book(path)
    path.write_text(large_text.replace('id = "L00007"', 'id = "L00007-renamed"', 1), encoding="utf-8")
    edited = read_book(path)
    assert len(parses) == 2
    assert "L00007-renamed" in edited.loans["loan_id"].to_list()
    assert len(list(cache.glob("*.zip"))) == 2


def test_changed_validating_code_is_a_new_key(
    tmp_path: Path, large_text: str, cache: Path, parses: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, large_text)
    read_book(path)
    monkeypatch.setattr(book_cache, "_CODE", "another release")
    read_book(path)
    assert len(parses) == 2


def test_the_code_fingerprint_covers_each_validating_module(tmp_path: Path) -> None:
    for module in book_cache.VALIDATING_MODULES:
        copy = tmp_path / module
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes((book_cache.ROOT / module).read_bytes())
    assert book_cache.code_fingerprint(tmp_path) == book_cache._CODE is not None
    seen = {book_cache._CODE}
    for module in book_cache.VALIDATING_MODULES:
        copy = tmp_path / module
        original = copy.read_bytes()
        copy.write_bytes(original + b"\n# changed\n")
        seen.add(book_cache.code_fingerprint(tmp_path))
        copy.write_bytes(original)
    assert len(seen) == 1 + len(book_cache.VALIDATING_MODULES)
    (tmp_path / book_cache.VALIDATING_MODULES[0]).unlink()
    assert book_cache.code_fingerprint(tmp_path) is None  # a module it cannot read: nothing is kept


def test_a_folder_others_can_write_to_is_neither_read_nor_written(
    tmp_path: Path, large_text: str, cache: Path, parses: list[Path]
) -> None:
    path = write(tmp_path, large_text)
    read_book(path)
    (kept,) = cache.glob("*.zip")
    cache.chmod(0o777)
    kept.unlink()
    read_book(path)
    read_book(path)
    assert len(parses) == 3 and not list(cache.glob("*.zip"))
    cache.chmod(0o700)
    read_book(path)
    read_book(path)
    assert len(parses) == 4 and len(list(cache.glob("*.zip"))) == 1


def test_an_invalid_large_book_fails_as_without_the_cache_and_is_not_kept(
    tmp_path: Path, large_text: str, cache: Path
) -> None:
    path = write(tmp_path, large_text.replace("annual_rate = 0.0", "annual_rate = -0.0", 1))
    with pytest.raises(ConfigError) as uncached:
        load_book(path)
    for _ in range(2):
        with pytest.raises(ConfigError) as cached:
            read_book(path)
        assert str(cached.value) == str(uncached.value)
        assert "field annual_rate" in str(cached.value) and cached.value.exit_code == 2
    assert not list(cache.glob("*.zip"))


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "empty", "another schema", "bad settings"])
def test_a_damaged_cache_file_costs_a_parse_and_is_replaced(
    tmp_path: Path, large_text: str, cache: Path, parses: list[Path], damage: str
) -> None:
    path = write(tmp_path, large_text)
    expected = read_book(path)
    (kept,) = cache.glob("*.zip")
    good = kept.read_bytes()
    if damage == "truncated":
        kept.write_bytes(good[: len(good) // 2])
    elif damage == "zeroed":
        kept.write_bytes(bytes(len(good)))
    elif damage == "empty":
        kept.write_bytes(b"")
    elif damage == "another schema":
        book_cache.write(kept.stem, dataclasses.replace(expected, loans=expected.loans.drop("cure_target")))
    else:
        import zipfile

        with zipfile.ZipFile(kept, "w") as broken:
            broken.writestr("book.json", '{"settings": {"backups_kept": -1}, "channels": []}')
            broken.writestr("loans.arrow", book_cache._ipc(expected.loans))
            broken.writestr("collateral.arrow", book_cache._ipc(expected.collateral))
    assert_same(read_book(path), expected)
    assert len(parses) == 2
    assert kept.read_bytes() == good  # kept again, whole
    assert_same(read_book(path), expected)
    assert len(parses) == 2


def test_a_small_book_is_not_kept(tmp_path: Path, cache: Path, book_path: Path) -> None:
    small = write(tmp_path, book_path.read_text(encoding="utf-8"), "small.toml")
    assert_same(read_book(small), BookFrames.of(load_book(small)))
    assert not cache.exists()


def test_an_unusable_or_disabled_cache_still_reads_the_book(
    tmp_path: Path, large_text: str, parses: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, large_text)
    expected = BookFrames.of(load_book(path))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("MARGINWATCH_CACHE_DIR", str(blocked))
    assert_same(read_book(path), expected)
    monkeypatch.setenv("MARGINWATCH_CACHE_DIR", "")
    assert_same(read_book(path), expected)
    assert len(parses) == 2


def test_only_the_most_recently_used_files_are_kept(
    tmp_path: Path, large_text: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(book_cache, "KEPT", 2)
    paths = [write(tmp_path, large_text.replace("Borrower 1", f"Borrower {n}x", 1), f"book{n}.toml") for n in range(3)]
    keys = [book_cache.key_for(p.read_bytes()) for p in paths]
    read_book(paths[0])
    read_book(paths[1])
    # Explicit times, as a file system's clock may give two quick writes the same one.
    os.utime(cache / f"{keys[0]}.zip", (1_000, 1_000))  # paths[0] long unused...
    os.utime(cache / f"{keys[1]}.zip", (2_000, 2_000))
    read_book(paths[0])  # ...then used again: it is the newest
    read_book(paths[2])  # a third key: the least recently used (paths[1]) goes
    assert {p.stem for p in cache.glob("*.zip")} == {keys[0], keys[2]}
    abandoned = cache / "writing-dead.part"
    abandoned.write_bytes(b"partial")
    os.utime(abandoned, (0, 0))
    read_book(paths[1])
    assert not abandoned.exists()


def test_frames_keep_the_book_order_and_types(tmp_path: Path, large_text: str, cache: Path) -> None:
    path = write(tmp_path, large_text)
    read_book(path)
    found = read_book(path)
    assert found.loans["loan_id"].to_list() == [f"L{i:05d}" for i in range(LOANS)]
    assert found.loans.schema == pl.Schema(book_module.LOAN_SCHEMA)
    assert found.collateral.schema == pl.Schema(book_module.COLLATERAL_SCHEMA)
