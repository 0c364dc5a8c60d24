"""Compiled Jinja templates kept on disk between runs, for the daily report and GX's Data Docs.

Every run is a fresh process, and Jinja compiles each template to Python before its first render:
GX's Data Docs templates took about 0.12 s of a daily run's 0.25 s for the docs. Jinja's own file
cache keeps the compiled code in a folder of the user's own (`_jinja2-cache-<uid>` in the system's
temporary directory, created private to the user), keyed by template and checked against its
source, so a changed template is compiled afresh. A cache that cannot be used costs only the compile.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from jinja2 import BytecodeCache, FileSystemBytecodeCache
from jinja2.bccache import Bucket

log = logging.getLogger(__name__)


class TolerantBytecodeCache(FileSystemBytecodeCache):
    """Jinja's file cache of compiled templates, whose failures cost a compile rather than a render."""

    def load_bytecode(self, bucket: Bucket) -> None:
        """Load the compiled template if its file is sound; otherwise leave it to be compiled."""
        try:
            super().load_bytecode(bucket)
        except Exception as exc:  # a damaged or unreadable file: compile the template afresh
            log.debug("compiled template %s not loaded: %s", bucket.key, exc)
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        """Keep the compiled template if the folder takes it (a full or removed folder keeps nothing)."""
        try:
            super().dump_bytecode(bucket)
        except OSError as exc:
            log.debug("compiled template %s not kept: %s", bucket.key, exc)


@lru_cache(maxsize=1)
def template_cache() -> BytecodeCache | None:
    """Return the process's cache of compiled templates, or None where no private folder can be had."""
    try:
        return TolerantBytecodeCache()
    except (OSError, RuntimeError) as exc:  # no temporary folder, or one another user owns
        log.debug("compiled templates are not cached: %s", exc)
        return None
