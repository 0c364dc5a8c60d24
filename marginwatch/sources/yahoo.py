"""Daily bars from Yahoo Finance through yfinance, the only module that imports it."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import polars as pl
import yfinance as yf
from yfinance.exceptions import YFDataException, YFPricesMissingError, YFRateLimitError

from marginwatch.errors import SourceUnavailable
from marginwatch.sources.base import RAW_BAR_SCHEMA, empty_bars

log = logging.getLogger(__name__)
# yfinance turns on DeprecationWarnings raised in its own code, and it trips pandas 3's;
# they are multi-line noise our users cannot act on.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"^yfinance")

# yfinance history column -> raw-bar column.
_COLUMNS = {
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Adj Close": "adj_close",
    "Volume": "volume",
    "Dividends": "dividends",
    "Stock Splits": "stock_splits",
}
_PRICES = ["open", "high", "low", "close"]
_TIMEOUT_NAMES = {"Timeout", "ReadTimeout", "ConnectTimeout"}  # curl_cffi and requests


class _StatusRecorder:
    """Stands in for yfinance's YfData, remembering the last HTTP status it saw."""

    def __init__(self, data: Any) -> None:
        self._data = data
        self.status: int | None = None

    def get(self, url: str, params: Any = None, timeout: float = 30) -> Any:
        """Fetch through yfinance's own request machinery and note the status code."""
        response = self._data.get(url, params=params, timeout=timeout)
        self.status = getattr(response, "status_code", None)
        return response

    # yfinance replays cached responses for past ranges; a retry after a 5xx must refetch.
    cache_get = get

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)


@dataclass(frozen=True)
class Backoff:
    """How a rate-limited (HTTP 429) symbol is retried within its deadline.

    At most `attempts` requests; the waits between them double from `first_seconds` up to
    `cap_seconds`, each shortened at random by up to `jitter` of itself so that symbols
    limited together do not retry together.
    """

    attempts: int = 4
    first_seconds: float = 1.0
    cap_seconds: float = 8.0
    jitter: float = 0.5

    def delay(self, retry: int) -> float:
        """Return the seconds to wait before retry number `retry` (0 for the first)."""
        return min(self.cap_seconds, self.first_seconds * 2**retry) * (1 - self.jitter * random.random())


class _Attempt(NamedTuple):
    """One request for a symbol: the bars, or the error, and the last HTTP status seen."""

    bars: pl.DataFrame | None
    error: Exception | None
    status: int | None

    @property
    def rate_limited(self) -> bool:
        """Whether Yahoo answered with its rate limit (HTTP 429)."""
        return isinstance(self.error, YFRateLimitError) or self.status == 429


class YahooSource:
    """Daily bars for stocks and Yahoo FX symbols (`JPY=X`) from Yahoo's chart API."""

    name = "yfinance"

    def __init__(
        self,
        timeout_seconds: float = 10,
        deadline_seconds: float = 20,
        cache_dir: Path | None = None,
        max_workers: int = 8,
        backoff: Backoff | None = None,
    ) -> None:
        # timeout_seconds bounds each HTTP request, deadline_seconds each symbol's fetch
        # (backoff included); max_workers bounds the symbols fetched at once by this source,
        # across concurrent fetch_bars calls (per process once pickled to a worker).
        self.timeout_seconds = timeout_seconds
        self.deadline_seconds = deadline_seconds
        self.cache_dir = Path(cache_dir) if cache_dir else _default_cache_dir()
        self.max_workers = max_workers
        self.backoff = backoff or Backoff()
        self._slots = threading.BoundedSemaphore(max_workers)
        self._configure()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the slots: a process that unpickles the source gets its own."""
        return {name: value for name, value in self.__dict__.items() if name != "_slots"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _slots=threading.BoundedSemaphore(state["max_workers"]))

    def _configure(self) -> None:
        """Set yfinance's process-wide options (again in a worker process that unpickled us)."""
        # No silent retries, and raise instead of logging and returning an empty frame.
        yf.config.network.retries = 0
        yf.config.debug.hide_exceptions = False
        # yfinance keeps sqlite caches (tz, cookie); keep them out of the user's home.
        # They are process-wide: the location used first in a process sticks.
        yf.set_tz_cache_location(str(self.cache_dir))

    def fetch_bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        """Return RAW_BAR_SCHEMA bars with session dates in [start, end], sorted.

        Symbols start in the order given, `max_workers` at a time. Once one fails, those after
        it that have not started are skipped and, when the others end, the first failing symbol
        in the order given is raised: the one a one-at-a-time fetch would have raised.
        """
        self._configure()
        unique = list(dict.fromkeys(symbols))
        if not unique:
            return empty_bars()
        failed: list[int] = []  # positions in `unique` of the symbols that failed so far
        with ThreadPoolExecutor(min(self.max_workers, len(unique)), thread_name_prefix="yfinance") as pool:
            futures = [
                pool.submit(self._fetch_unless_failed, symbol, start, end, position, failed)
                for position, symbol in enumerate(unique)
            ]
        # A symbol is skipped only after one before it failed, whose error is raised first here.
        frames = [future.result() for future in futures]
        return pl.concat([empty_bars(), *frames]).sort("symbol", "session_date")

    def _fetch_unless_failed(
        self, symbol: str, start: dt.date, end: dt.date, position: int, failed: list[int]
    ) -> pl.DataFrame:
        """Fetch one symbol in one of the source's `max_workers` slots, unless one before it failed."""
        with self._slots:
            if failed and position > min(failed):
                raise _Skipped(symbol)
            try:
                return self._fetch(symbol, start, end)
            except Exception:
                failed.append(position)
                raise

    def _fetch(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Fetch one symbol within the deadline, translating every failure."""
        give_up_at = time.monotonic() + self.deadline_seconds
        outcome: list[_Attempt] = []

        # yfinance's cookie/crumb requests use their own 30 s timeouts; only a thread we
        # can walk away from bounds the total. Daemon, so it never delays process exit.
        worker = threading.Thread(
            target=lambda: outcome.append(self._with_backoff(symbol, start, end, give_up_at)),
            name=f"yfinance-{symbol}",
            daemon=True,
        )
        worker.start()
        worker.join(self.deadline_seconds)
        if worker.is_alive():
            cause = f"timed out after {self.deadline_seconds:g}s"
            raise SourceUnavailable(symbol, cause, transient=False)
        span = f"{start}..{end}"
        bars, error, status = outcome[0]
        if bars is None:
            log.debug("yfinance failed for %s: %r", symbol, error)
            cause, transient = _diagnose(error, status, self.timeout_seconds, span)
            raise SourceUnavailable(symbol, cause, transient=transient)
        bars = bars.filter(pl.col("session_date").is_between(start, end))
        if bars.is_empty():
            cause, transient = _diagnose(None, status, self.timeout_seconds, span)
            raise SourceUnavailable(symbol, cause, transient=transient)
        return bars

    def _with_backoff(self, symbol: str, start: dt.date, end: dt.date, give_up_at: float) -> _Attempt:
        """Request the symbol, again after a backoff wait while Yahoo rate-limits and time allows."""
        for retry in range(self.backoff.attempts - 1):
            attempt = self._attempt(symbol, start, end)
            delay = self.backoff.delay(retry)
            if not attempt.rate_limited or time.monotonic() + delay >= give_up_at:
                return attempt
            log.debug("Yahoo rate-limited %s; retrying in %.2fs", symbol, delay)
            time.sleep(delay)
        return self._attempt(symbol, start, end)

    def _attempt(self, symbol: str, start: dt.date, end: dt.date) -> _Attempt:
        """Request the symbol once, capturing any failure."""
        recorder = _StatusRecorder(None)
        try:
            return _Attempt(self._history(symbol, start, end, recorder), None, recorder.status)
        except Exception as exc:
            return _Attempt(None, exc, recorder.status)

    def _history(self, symbol: str, start: dt.date, end: dt.date, recorder: _StatusRecorder) -> pl.DataFrame:
        """Run yfinance's own download and parsing for one symbol."""
        ticker = yf.Ticker(symbol)
        recorder._data = ticker._data
        ticker._data = recorder
        # yfinance looks the exchange tz up (one more request, plus a disk cache) only to
        # turn start/end into epochs; a day of slack each side, filtered later, is enough.
        ticker._tz = "UTC"
        history = ticker.history(
            start=start - dt.timedelta(days=1),
            end=end + dt.timedelta(days=2),
            interval="1d",
            auto_adjust=False,
            actions=True,
            timeout=self.timeout_seconds,
        )
        _check_answered_symbol(symbol, ticker)
        return _to_bars(symbol, history)


class _Skipped(Exception):
    """A symbol left unfetched because one before it failed; fetch_bars raises that one instead."""


class _WrongSymbol(Exception):
    """Yahoo answered a request for one symbol with another symbol's chart."""

    def __init__(self, answered: str) -> None:
        super().__init__(answered)
        self.answered = answered


def _check_answered_symbol(symbol: str, ticker: yf.Ticker) -> None:
    """Raise _WrongSymbol unless the chart's own `meta.symbol` is the one asked for (case aside).

    Another ticker's bars would otherwise be stored and valued as the pledged symbol's.
    """
    answered = ticker.get_history_metadata().get("symbol")  # read from the chart just fetched, no request
    if answered and str(answered).upper() != symbol.upper():
        raise _WrongSymbol(str(answered))


def _default_cache_dir() -> Path:
    """A per-user directory under the system temp dir."""
    suffix = f"-{os.getuid()}" if hasattr(os, "getuid") else ""
    return Path(tempfile.gettempdir()) / f"marginwatch-yfinance{suffix}"


def _to_bars(symbol: str, history: pd.DataFrame) -> pl.DataFrame:
    """Convert yfinance's exchange-tz daily frame to raw bars without all-null OHLC rows."""
    if history.empty:
        return empty_bars()
    data: dict[str, Any] = {
        "symbol": [symbol] * len(history),
        # The index is midnight in the exchange's time zone: its date is the session.
        "session_date": list(history.index.date),
    }
    for column, name in _COLUMNS.items():
        data[name] = history[column].to_numpy(dtype="float64", na_value=float("nan"))
    bars = pl.DataFrame(data, schema=RAW_BAR_SCHEMA, nan_to_null=True)
    return bars.filter(~pl.all_horizontal(pl.col(_PRICES).is_null())).with_columns(
        pl.col("dividends", "stock_splits").fill_null(0.0)
    )


def _diagnose(error: Exception | None, status: int | None, timeout: float, span: str) -> tuple[str, bool]:
    """Return a one-line cause and whether retrying within the run may help (rate limit, 5xx)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if isinstance(error, YFRateLimitError) or status == 429:
        return "Yahoo rate limit (HTTP 429)", True
    if status is not None and status >= 500:
        return f"Yahoo server error (HTTP {status})", True
    if isinstance(error, YFDataException) and "DOWN" in str(error):
        return "Yahoo Finance is down (maintenance page)", True
    if isinstance(error, _WrongSymbol):
        return f"Yahoo sent the chart of {error.answered} instead", False
    if isinstance(error, json.JSONDecodeError):
        return "invalid JSON from Yahoo (truncated or not JSON)", False
    # A hung network is not retried within a run: a blocked fetch must fail inside 30 s.
    if isinstance(error, TimeoutError) or names & _TIMEOUT_NAMES:
        return f"timed out after {timeout:g}s", False
    if isinstance(error, OSError) and (
        isinstance(error, socket.gaierror) or "DNSError" in names or "resolve" in str(error).lower()
    ):
        return "network unreachable (DNS lookup failed)", False
    http = f" (HTTP {status})" if status is not None and status >= 400 else ""
    if isinstance(error, YFPricesMissingError) and error.yahoo_reason:
        return f"Yahoo error{http}: {error.yahoo_reason}", False
    if error is None or isinstance(error, YFPricesMissingError):
        return f"no bars returned for {span}{http}", False
    if isinstance(error, OSError):
        return f"network unreachable (connection failed: {type(error).__name__})", False
    return f"unexpected {type(error).__name__}{http} from yfinance", False
