"""Validated large books kept between runs, keyed by the file's content and the code that validates it.

Parsing and validating a 10,000-loan book costs about half a second, in every run and in the
commands that read its settings first. The first read of a book of at least `MIN_BYTES` keeps its
settings, channels and frames in one file under the cache folder (`MARGINWATCH_CACHE_DIR`, else
the user's cache folder); later reads of the same bytes take them from there. The key covers the
book's bytes, this package's validating modules as this process loaded them, Python's version and
the versions of the libraries that parse and validate, so an edited book or a changed rule is
validated afresh. Only books that passed validation are kept, and only in a folder of the user's
own that no one else can write to. A cache that cannot be read or written costs only the parse:
every failure here falls back to it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

import polars as pl
from polars.exceptions import PanicException

from marginwatch.book import BookFrames
from marginwatch.config import Channel, Settings, book_cache_dir, parse_book, read_book_bytes
from transforms.ltv import COLLATERAL_SCHEMA, LOAN_SCHEMA

log = logging.getLogger(__name__)

MIN_BYTES = 256 * 1024  # about 500 loans: below this a parse costs a few milliseconds
KEPT = 8  # cache files kept, the most recently used first
ABANDONED_SECONDS = 3600  # a partial file this old was left by a process that died writing it
VALIDATING_MODULES = ("marginwatch/config.py", "marginwatch/book.py", "marginwatch/book_cache.py", "transforms/ltv.py")
LIBRARIES = ("pydantic", "pydantic-core", "pycountry", "polars", "rtoml")
ROOT = Path(__file__).resolve().parent.parent

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def code_fingerprint(root: Path) -> str | None:
    """Return a digest of the validating modules under `root` and of Python's and the libraries' versions.

    None when one cannot be read (then nothing is kept).
    """
    digest = hashlib.sha256(sys.version.encode())
    try:
        for module in VALIDATING_MODULES:
            digest.update(module.encode() + b"\0" + (root / module).read_bytes())
        for library in LIBRARIES:
            digest.update(f"{library}={metadata.version(library)}".encode())
    except (OSError, metadata.PackageNotFoundError) as exc:
        log.debug("validated books are not kept: %s", exc)
        return None
    return digest.hexdigest()


# Taken when this module is imported, beside the modules it covers: a process keeps the code it
# loaded, so an upgrade on disk while it runs must not put its results under the new code's key.
_CODE = code_fingerprint(ROOT)


def read_book(path: Path) -> BookFrames:
    """Return the validated book in the TOML file at `path` as frames; ConfigError when it is not valid.

    A large book is read back from the cache when its bytes were validated before, and kept after
    it is validated; a small one is parsed every time.
    """
    data = read_book_bytes(path)
    key = key_for(data)
    kept = None if key is None else read(key)
    if kept is not None:
        return kept
    book = BookFrames.of(parse_book(path, data))
    if key is not None:
        write(key, book)
    return book


def key_for(data: bytes) -> str | None:
    """Return the cache key of a book file's bytes, or None when the book is small or nothing can be cached."""
    if len(data) < MIN_BYTES or _CODE is None or book_cache_dir() is None:
        return None
    return hashlib.sha256(_CODE.encode() + b"\0" + data).hexdigest()


def read(key: str) -> BookFrames | None:
    """Return the kept book under `key`, or None when there is none or it cannot be used."""
    folder = _private_folder(create=False)
    if folder is None:
        return None
    path = folder / f"{key}.zip"
    try:
        with zipfile.ZipFile(path) as kept:
            header = json.loads(kept.read("book.json"))
            loans = pl.read_ipc(io.BytesIO(kept.read("loans.arrow")))
            collateral = pl.read_ipc(io.BytesIO(kept.read("collateral.arrow")))
        if loans.schema != pl.Schema(LOAN_SCHEMA) or collateral.schema != pl.Schema(COLLATERAL_SCHEMA):
            raise ValueError("kept frames have another schema")
        settings = Settings.model_validate(header["settings"])
        channels = [Channel.model_validate(channel) for channel in header["channels"]]
    except FileNotFoundError:
        return None
    except (Exception, PanicException) as exc:  # a damaged, foreign or unreadable file: validate afresh
        log.debug("kept book %s not used: %s", path, exc)
        return None
    try:
        os.utime(path)  # most recently used: kept longest
    except OSError as exc:
        log.debug("kept book %s not marked as used: %s", path, exc)
    return BookFrames(settings, channels, loans, collateral)


def write(key: str, book: BookFrames) -> None:
    """Keep a validated book under `key` (atomically), and drop all but the `KEPT` most recently used."""
    try:
        folder = _private_folder(create=True)
        if folder is None:
            return
        header = {
            "settings": book.settings.model_dump(mode="json"),
            "channels": [c.model_dump(mode="json") for c in book.channels],
        }
        with tempfile.NamedTemporaryFile(dir=folder, prefix="writing-", suffix=".part", delete=False) as handle:
            temporary = Path(handle.name)
            try:
                with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as kept:
                    for name, content in (
                        ("book.json", json.dumps(header).encode()),
                        ("loans.arrow", _ipc(book.loans)),
                        ("collateral.arrow", _ipc(book.collateral)),
                    ):
                        kept.writestr(zipfile.ZipInfo(name, date_time=_EPOCH), content)  # same book, same bytes
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        os.replace(temporary, folder / f"{key}.zip")
        _prune(folder)
    except Exception as exc:  # a full, read-only or removed folder: the run goes on, the next validates again
        log.debug("validated book not kept: %s", exc)


def _ipc(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="lz4")
    return buffer.getvalue()


def _prune(folder: Path) -> None:
    kept = sorted(folder.glob("*.zip"), key=lambda p: p.stat().st_mtime, reverse=True)
    abandoned = [p for p in folder.glob("*.part") if time.time() - p.stat().st_mtime > ABANDONED_SECONDS]
    for stale in [*kept[KEPT:], *abandoned]:
        stale.unlink(missing_ok=True)


def _private_folder(create: bool) -> Path | None:
    """Return the cache folder if it is a folder of this user's that no one else can write to, else None.

    Whoever can write a file there decides a book's settings, channels and levels on the next read.
    """
    folder = book_cache_dir()
    if folder is None:
        return None
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        found = folder.lstat()
    except OSError:
        return None
    mine = not hasattr(os, "getuid") or found.st_uid == os.getuid()
    if not stat.S_ISDIR(found.st_mode) or not mine or found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        log.debug("validated books are not kept in %s: not a private folder of this user's", folder)
        return None
    return folder
