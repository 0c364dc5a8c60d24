"""A replayed Yahoo chart API behind yfinance's own request seam (`YfData.get`), with faults on demand.

The reliability tests install it in process; run as a script it installs the same replay inside a
real `marginwatch` process and then hands over to the CLI's entry point:

    MW_YAHOO_FAULT='{"kind": "dns"}' python yahoo_replay.py --warehouse w.duckdb run --source yfinance

Good answers are the synthetic source's bars (seed 20250911, the default book's), dressed as chart-API
payloads, so a replayed `yfinance` run agrees with a `synthetic` one wherever no fault is injected.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

FAULT_ENV = "MW_YAHOO_FAULT"
ERROR_PAGE = "<html><body><h1>500 Internal Server Error</h1></body></html>"
# Each fault, injected on the symbol it names (ARM by default): what Yahoo (or the network) does.
FAULTS = (
    "dns",  # the host name does not resolve
    "timeout",  # the request times out
    "http-429",  # rate limited
    "http-500",  # server error page
    "empty",  # a chart result without a single bar
    "truncated",  # the JSON ends mid-way
    "nulls",  # every OHLCV array entry is null
    "null-open",  # the bar of `day` has a close but a null open
    "future-bar",  # the good bars plus bars dated after the requested range
    "wrong-symbol",  # another ticker's chart (meta.symbol and prices of AMD)
)


@dataclass(frozen=True)
class Fault:
    """What the replay does: `kind` is a FAULTS name, "good", or "hold" (block until `release` exists)."""

    kind: str = "good"
    symbol: str = "ARM"
    day: str | None = None  # "null-open": the session whose bar loses its open
    started: str | None = None  # "hold": a file created when the first request arrives
    release: str | None = None  # "hold": the request is answered once this file exists

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Fault:
        return cls(**json.loads(os.environ.get(FAULT_ENV) or "{}"))


class Response:
    """The parts of a curl_cffi response that yfinance reads."""

    def __init__(self, text: str, status_code: int = 200) -> None:
        self.text = text
        self.status_code = status_code
        self.url = "https://query2.finance.yahoo.com/v8/finance/chart"

    def json(self) -> Any:
        return json.loads(self.text)


def _window(params: dict[str, Any]) -> tuple[dt.date, dt.date]:
    """Return the calendar dates the request's epoch bounds cover."""
    first = dt.datetime.fromtimestamp(int(params["period1"]), dt.UTC).date()
    last = dt.datetime.fromtimestamp(int(params["period2"]) - 1, dt.UTC).date()
    return first, last


def chart_payload(symbol: str, start: dt.date, end: dt.date, answered_as: str | None = None) -> dict[str, Any]:
    """Return a chart-API payload holding the synthetic bars of `symbol` in [start, end].

    `answered_as` names the ticker whose bars (and meta.symbol) the payload really carries.
    """
    from marginwatch.sources.synthetic import SyntheticSource

    ticker = answered_as or symbol
    bars = SyntheticSource().fetch_bars([ticker], start, end)
    fx = ticker.endswith("=X")
    zone = ZoneInfo("Europe/London" if fx else "America/New_York")
    opens_at = dt.time(0, 0) if fx else dt.time(9, 30)
    stamps = [int(dt.datetime.combine(day, opens_at, zone).timestamp()) for day in bars["session_date"]]
    meta = {
        "currency": ticker[:3] if fx else "USD",
        "symbol": ticker,
        "exchangeName": "CCY" if fx else "NMS",
        "instrumentType": "CURRENCY" if fx else "EQUITY",
        "firstTradeDate": 946857600,
        "regularMarketTime": stamps[-1] if stamps else 0,
        "gmtoffset": 0 if fx else -18000,
        "timezone": "GMT" if fx else "EST",
        "exchangeTimezoneName": zone.key,
        "regularMarketPrice": bars["close"][-1] if bars.height else None,
        "chartPreviousClose": bars["close"][0] if bars.height else None,
        "priceHint": 2,
        "dataGranularity": "1d",
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    quote = {name: bars[name].to_list() for name in ("open", "high", "low", "close")}
    quote["volume"] = [int(v) for v in bars["volume"]]
    adjclose = {"adjclose": bars["adj_close"].to_list()}
    result: dict[str, Any] = {"meta": meta, "indicators": {"quote": [quote], "adjclose": [adjclose]}}
    if stamps:
        result["timestamp"] = stamps
    else:
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
    return {"chart": {"result": [result], "error": None}}


def answer(fault: Fault, symbol: str, params: dict[str, Any]) -> Response:
    """Return Yahoo's answer to one chart request for `symbol`, or raise the network failure."""
    from curl_cffi.requests import exceptions as curl

    start, end = _window(params)
    kind = fault.kind if symbol == fault.symbol else "good"
    if kind == "hold":
        _hold(fault)
    if kind == "dns":
        raise curl.DNSError("Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com.", 6)
    if kind == "timeout":
        raise curl.Timeout("Failed to perform, curl: (28) Operation timed out after 10002 milliseconds.", 28)
    if kind == "http-429":
        return Response("Too Many Requests", 429)
    if kind == "http-500":
        return Response(ERROR_PAGE, 500)
    payload = chart_payload(symbol, start, end, "AMD" if kind == "wrong-symbol" else None)
    result = payload["chart"]["result"][0]
    if kind == "empty":
        return Response(json.dumps(chart_payload(symbol, end + dt.timedelta(days=1), end)))
    if kind == "nulls":
        quote = result["indicators"]["quote"][0]
        for name in quote:
            quote[name] = [None] * len(quote[name])
        result["indicators"]["adjclose"][0]["adjclose"] = [None] * len(quote["close"])
    if kind == "null-open" and fault.day:
        days = [dt.datetime.fromtimestamp(t, dt.UTC).date().isoformat() for t in result["timestamp"]]
        result["indicators"]["quote"][0]["open"][days.index(fault.day)] = None
    if kind == "future-bar":
        _add_future_bars(result)
    text = json.dumps(payload)
    return Response(text[: len(text) // 2] if kind == "truncated" else text)


def _add_future_bars(result: dict[str, Any]) -> None:
    """Append two bars Yahoo should not have sent: the next calendar day, and a year on."""
    last = result["timestamp"][-1]
    quote = result["indicators"]["quote"][0]
    for seconds in (86_400, 366 * 86_400):
        result["timestamp"].append(last + seconds)
        for name in ("open", "high", "low", "close"):
            quote[name].append(quote[name][-1] * 1.01)
        quote["volume"].append(quote["volume"][-1])
    result["indicators"]["adjclose"][0]["adjclose"] = list(quote["close"])


def _hold(fault: Fault) -> None:
    """Announce the request, then wait (at most two minutes) until the test releases it."""
    if fault.started:
        Path(fault.started).touch()
    deadline = time.monotonic() + 120
    while fault.release and not Path(fault.release).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def replay_get(fault: Fault, requests: list[str] | None = None) -> Callable[..., Response]:
    """Return a stand-in for `YfData.get` that answers every chart request from the replay.

    The symbol of each request is appended to `requests` when given.
    """

    def get(data: Any, url: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Response:
        symbol = url.rsplit("/", 1)[-1]
        if requests is not None:
            requests.append(symbol)
        return answer(fault, symbol, dict(params or {}))

    return get


def main() -> None:
    """Install the fault named in MW_YAHOO_FAULT, then run the CLI with this script's arguments."""
    from yfinance.data import YfData

    YfData.get = replay_get(Fault.from_env())  # type: ignore[method-assign]
    from marginwatch import cli

    sys.argv = ["marginwatch", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
