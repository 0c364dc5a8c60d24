"""Validated large books kept between runs, keyed by the file's content and the code that validates it.

Parsing and validating a 10,000-loan book costs about half a second, in every run and in the
commands that read its settings first. The first read of a book of at least `MIN_BYTES` keeps its
settings, channels and frames in one file under the cache folder (`MARGINWATCH_CACHE_DIR`, else
the user's cache folder); later reads of the same bytes take them from there. The key covers the
book's bytes, this package's validating modules and the versions of the libraries they rely on, so
an edited book or a changed rule is validated afresh. Only books that passed validation are kept.
A cache that cannot be read or written costs only the parse: every failure here falls back to it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
import zipfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import polars as pl

from marginwatch.config import Channel, Settings, book_cache_dir
from transforms.ltv import COLLATERAL_SCHEMA, LOAN_SCHEMA

log = logging.getLogger(__name__)

MIN_BYTES = 256 * 1024  # about 500 loans: below this a parse costs a few milliseconds
KEPT = 8  # cache files kept, the most recently used first
ABANDONED_SECONDS = 3600  # a partial file this old was left by a process that died writing it
_VALIDATING_MODULES = ("marginwatch/config.py", "marginwatch/book.py", "marginwatch/book_cache.py", "transforms/ltv.py")
_LIBRARIES = ("pydantic", "pydantic-core", "pycountry", "polars")

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
Kept = tuple[Settings, list[Channel], pl.DataFrame, pl.DataFrame]


def key_for(data: bytes) -> str | None:
    """Return the cache key of a book file's bytes, or None when the book is small or nothing can be cached."""
    if len(data) < MIN_BYTES or _folder() is None:
        return None
    code = _code_fingerprint()
    return None if code is None else hashlib.sha256(code.encode() + b"\0" + data).hexdigest()


def read(key: str) -> Kept | None:
    """Return the kept book under `key`, or None when there is none or it cannot be used."""
    folder = _folder()
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
        os.utime(path)  # most recently used: kept longest
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged, foreign or unreadable file: validate the book afresh
        log.debug("kept book %s not used: %s", path, exc)
        return None
    return settings, channels, loans, collateral


def write(key: str, settings: Settings, channels: list[Channel], loans: pl.DataFrame, collateral: pl.DataFrame) -> None:
    """Keep a validated book under `key` (atomically), and drop all but the `KEPT` most recently used."""
    folder = _folder()
    if folder is None:
        return
    header = {"settings": settings.model_dump(mode="json"), "channels": [c.model_dump(mode="json") for c in channels]}
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=folder, prefix="writing-", suffix=".part", delete=False) as handle:
            temporary = Path(handle.name)
            try:
                with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as kept:
                    for name, content in (
                        ("book.json", json.dumps(header).encode()),
                        ("loans.arrow", _ipc(loans)),
                        ("collateral.arrow", _ipc(collateral)),
                    ):
                        kept.writestr(zipfile.ZipInfo(name, date_time=_EPOCH), content)  # same book, same bytes
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        os.replace(temporary, folder / f"{key}.zip")
        _prune(folder)
    except OSError as exc:  # a full, read-only or removed folder: the next run validates again
        log.debug("validated book not kept in %s: %s", folder, exc)


def _ipc(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="lz4")
    return buffer.getvalue()


def _prune(folder: Path) -> None:
    kept = sorted(folder.glob("*.zip"), key=lambda p: p.stat().st_mtime, reverse=True)
    abandoned = [p for p in folder.glob("*.part") if time.time() - p.stat().st_mtime > ABANDONED_SECONDS]
    for stale in [*kept[KEPT:], *abandoned]:
        stale.unlink(missing_ok=True)


def _folder() -> Path | None:
    return book_cache_dir()


@lru_cache(maxsize=1)
def _code_fingerprint() -> str | None:
    """Return a digest of the code and library versions a validation depends on; None if they cannot be read."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    try:
        for module in _VALIDATING_MODULES:
            digest.update((root / module).read_bytes())
        for library in _LIBRARIES:
            digest.update(f"{library}={metadata.version(library)}".encode())
    except (OSError, metadata.PackageNotFoundError) as exc:
        log.debug("validated books are not kept: %s", exc)
        return None
    return digest.hexdigest()
