"""Daily bars from Yahoo Finance through yfinance, the only module that imports it."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


class YahooSource:
    """Daily bars for stocks and Yahoo FX symbols (`JPY=X`) from Yahoo's chart API."""

    name = "yfinance"

    def __init__(
        self,
        timeout_seconds: float = 10,
        deadline_seconds: float = 20,
        cache_dir: Path | None = None,
    ) -> None:
        # timeout_seconds bounds each HTTP request, deadline_seconds each symbol's fetch.
        self.timeout_seconds = timeout_seconds
        self.deadline_seconds = deadline_seconds
        self.cache_dir = Path(cache_dir) if cache_dir else _default_cache_dir()
        self._configure()

    def _configure(self) -> None:
        """Set yfinance's process-wide options (again in a worker process that unpickled us)."""
        # No silent retries, and raise instead of logging and returning an empty frame.
        yf.config.network.retries = 0
        yf.config.debug.hide_exceptions = False
        # yfinance keeps sqlite caches (tz, cookie); keep them out of the user's home.
        # They are process-wide: the location used first in a process sticks.
        yf.set_tz_cache_location(str(self.cache_dir))

    def fetch_bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        """Return RAW_BAR_SCHEMA bars with session dates in [start, end], sorted."""
        self._configure()
        frames = [self._fetch(symbol, start, end) for symbol in dict.fromkeys(symbols)]
        return pl.concat([empty_bars(), *frames]).sort("symbol", "session_date")

    def _fetch(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Fetch one symbol within the deadline, translating every failure."""
        recorder = _StatusRecorder(None)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["bars"] = self._history(symbol, start, end, recorder)
            except Exception as exc:
                outcome["error"] = exc

        # yfinance's cookie/crumb requests use their own 30 s timeouts; only a thread we
        # can walk away from bounds the total. Daemon, so it never delays process exit.
        worker = threading.Thread(target=work, name=f"yfinance-{symbol}", daemon=True)
        worker.start()
        worker.join(self.deadline_seconds)
        if worker.is_alive():
            cause = f"timed out after {self.deadline_seconds:g}s"
            raise SourceUnavailable(symbol, cause, transient=False)
        span = f"{start}..{end}"
        error = outcome.get("error")
        if error is not None:
            log.debug("yfinance failed for %s: %r", symbol, error)
            cause, transient = _diagnose(error, recorder.status, self.timeout_seconds, span)
            raise SourceUnavailable(symbol, cause, transient=transient)
        bars = outcome["bars"].filter(pl.col("session_date").is_between(start, end))
        if bars.is_empty():
            cause, transient = _diagnose(None, recorder.status, self.timeout_seconds, span)
            raise SourceUnavailable(symbol, cause, transient=transient)
        return bars

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
