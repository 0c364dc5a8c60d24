"""YahooSource replays hand-written chart-API payloads through yfinance's own parsing."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
import yfinance as yf
from curl_cffi.requests import exceptions as curl_exc
from yfinance.data import YfData
from yfinance.exceptions import YFRateLimitError

from marginwatch.errors import SourceUnavailable
from marginwatch.sources.base import RAW_BAR_SCHEMA
from marginwatch.sources.yahoo import Backoff, YahooSource

FIXTURES = Path(__file__).parents[1] / "fixtures" / "yahoo"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
FAST = Backoff(first_seconds=0.001, cap_seconds=0.004)  # the real waits, a thousandth as long


class FakeResponse:
    """The parts of a curl_cffi response that yfinance reads."""

    def __init__(self, text: str, status_code: int = 200) -> None:
        self.text = text
        self.status_code = status_code
        self.url = "https://query2.finance.yahoo.com/v8/finance/chart"

    def json(self) -> object:
        return json.loads(self.text)


Answer = tuple[float, FakeResponse | Exception]


class FakeYahoo:
    """Answers YfData.get per symbol (taken from the URL), records each call and the most requests at once."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = {}
        self.calls: list[tuple[str, dict, float]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def serve(self, symbol: str, fixture: str, status: int = 200, delay: float = 0.0) -> None:
        self.reply(symbol, (FIXTURES / fixture).read_text(), status, delay)

    def reply(self, symbol: str, text: str, status: int, delay: float = 0.0) -> None:
        self.answers[symbol] = [(delay, FakeResponse(text, status))]

    def fail(self, symbol: str, error: Exception, delay: float = 0.0) -> None:
        self.answers[symbol] = [(delay, error)]

    def first(self, symbol: str, *answers: Answer) -> None:
        """Give these answers to the symbol's first requests, then the one set before."""
        self.answers[symbol][:0] = answers

    def get(self, url: str, params: dict | None, timeout: float) -> FakeResponse:
        # The tz lookup (range=1d) would get the same payload, hence the same meta.
        symbol = url.rsplit("/", 1)[-1]
        with self._lock:
            self.calls.append((symbol, dict(params or {}), timeout))
            queued = self.answers[symbol]
            delay, answer = queued.pop(0) if len(queued) > 1 else queued[0]
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(delay)
        finally:
            with self._lock:
                self.in_flight -= 1
        if isinstance(answer, Exception):
            raise answer
        return answer

    def requests(self, symbol: str) -> int:
        return sum(call[0] == symbol for call in self.calls)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any Python socket connection to a non-loopback address."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> None:
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise AssertionError(f"test tried to reach the network: {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def yahoo(monkeypatch: pytest.MonkeyPatch) -> FakeYahoo:
    """Patch only YfData.get, so every request yfinance makes is a canned answer."""
    fake = FakeYahoo()

    def get(data: YfData, url: str, params=None, timeout=30) -> FakeResponse:
        return fake.get(url, params, timeout)

    monkeypatch.setattr(YfData, "get", get)
    return fake


@pytest.fixture
def source(tmp_path: Path) -> YahooSource:
    return YahooSource(cache_dir=tmp_path, backoff=FAST)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def test_daily_payload_becomes_raw_bars(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("ARM", "arm_daily.json")
    bars = source.fetch_bars(["ARM"], d("2026-01-05"), d("2026-01-09"))
    assert bars.schema == pl.Schema(RAW_BAR_SCHEMA)
    assert bars["session_date"].to_list() == [
        d("2026-01-05"),
        d("2026-01-06"),
        d("2026-01-07"),
        d("2026-01-08"),
        d("2026-01-09"),
    ]
    assert bars["close"].to_list() == [110.25, 112.5, 109.75, 111.0, 113.4]
    assert bars.row(0) == (
        "ARM",
        d("2026-01-05"),
        108.5,
        111.2,
        107.9,
        110.25,
        110.25,
        4512300.0,
        0.0,
        0.0,
    )
    # One chart request with the per-request timeout; no separate tz lookup.
    assert len(yahoo.calls) == 1
    symbol, params, timeout = yahoo.calls[0]
    assert (symbol, params["interval"], timeout) == ("ARM", "1d", 10)


def test_bars_outside_the_requested_range_are_dropped(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("ARM", "arm_daily.json")
    bars = source.fetch_bars(["ARM"], d("2026-01-06"), d("2026-01-08"))
    assert bars["close"].to_list() == [112.5, 109.75, 111.0]


def test_fx_bars_dated_in_london_not_utc(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("JPY=X", "jpy_fx.json")
    bars = source.fetch_bars(["JPY=X"], d("2025-07-07"), d("2025-07-11"))
    # 00:00 London in summer is 23:00 UTC the day before.
    first = json.loads((FIXTURES / "jpy_fx.json").read_text())["chart"]["result"][0]
    utc_day = dt.datetime.fromtimestamp(first["timestamp"][0], dt.UTC).date()
    assert utc_day == d("2025-07-06")
    # The request window must reach back to that UTC instant and past the last bar.
    _, params, _ = yahoo.calls[0]
    assert params["period1"] <= first["timestamp"][0] < first["timestamp"][-1] < params["period2"]
    assert bars["session_date"].to_list() == [
        d("2025-07-07"),
        d("2025-07-08"),
        d("2025-07-09"),
        d("2025-07-10"),
        d("2025-07-11"),
    ]
    assert bars["close"].to_list() == [144.592, 146.068, 146.593, 146.297, 146.211]
    assert bars["volume"].to_list() == [0.0] * 5
    assert bars["symbol"].unique().to_list() == ["JPY=X"]


def test_null_entries_dropped_and_no_nan(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("ARM", "arm_nulls.json")
    bars = source.fetch_bars(["ARM"], d("2026-01-12"), d("2026-01-16"))
    # 2026-01-14 is all null; the live bar at 19:59:58 New York (00:59 UTC on the
    # 17th) belongs to the 16th.
    assert bars["session_date"].to_list() == [
        d("2026-01-12"),
        d("2026-01-13"),
        d("2026-01-15"),
        d("2026-01-16"),
    ]
    assert bars["close"].to_list() == [114.8, 115.55, 114.9, 116.65]
    assert bars["open"].to_list() == [113.0, 114.5, None, 115.1]
    for column in ("open", "high", "low", "close", "adj_close", "volume"):
        assert not bars[column].is_nan().any()


def test_dividend_surfaced(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("AAPL", "aapl_dividend.json")
    bars = source.fetch_bars(["AAPL"], d("2025-11-06"), d("2025-11-12"))
    assert bars["dividends"].to_list() == [0.0, 0.0, 0.26, 0.0, 0.0]
    assert bars["session_date"][2] == d("2025-11-10")
    assert bars.row(0)[5:7] == (269.77, 269.51)  # close, adj_close


def test_split_surfaced_as_ratio(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("PANW", "panw_split.json")
    bars = source.fetch_bars(["PANW"], d("2024-12-12"), d("2024-12-18"))
    assert bars["stock_splits"].to_list() == [0.0, 0.0, 2.0, 0.0, 0.0]
    assert bars["session_date"][2] == d("2024-12-16")
    assert bars["close"].to_list() == [195.06, 192.87, 195.49, 190.33, 182.12]


def test_many_symbols_concatenated_and_sorted(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("JPY=X", "jpy_fx.json")
    yahoo.serve("ARM", "arm_daily.json")
    bars = source.fetch_bars(["JPY=X", "ARM", "ARM"], d("2025-07-01"), d("2026-01-31"))
    assert bars["symbol"].to_list() == ["ARM"] * 5 + ["JPY=X"] * 5
    assert bars["session_date"][0] == d("2026-01-05")
    assert bars["session_date"][5] == d("2025-07-07")
    assert Counter(call[0] for call in yahoo.calls) == {"JPY=X": 1, "ARM": 1}


def test_no_symbols_gives_empty_frame(source: YahooSource) -> None:
    bars = source.fetch_bars([], d("2026-01-05"), d("2026-01-09"))
    assert bars.is_empty() and bars.schema == pl.Schema(RAW_BAR_SCHEMA)


def test_yfinance_configured_to_fail_fast(source: YahooSource) -> None:
    assert yf.config.network.retries == 0
    assert yf.config.debug.hide_exceptions is False


DNS = "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com."
TIMEOUT = "Failed to perform, curl: (28) Operation timed out after 10002 milliseconds."
REFUSED = "Failed to perform, curl: (7) Failed to connect to query2.finance.yahoo.com."
ERROR_PAGE = "<html><body><h1>500 Internal Server Error</h1></body></html>"
DNS_CAUSE = "network unreachable (DNS lookup failed)"
RATE_CAUSE = "Yahoo rate limit (HTTP 429)"


@pytest.mark.parametrize(
    ("error", "cause", "transient"),
    [
        (curl_exc.DNSError(DNS, 6), DNS_CAUSE, False),
        (socket.gaierror(-2, "Name or service not known"), DNS_CAUSE, False),
        (curl_exc.Timeout(TIMEOUT, 28), "timed out after 10s", False),
        (curl_exc.ConnectTimeout(TIMEOUT, 28), "timed out after 10s", False),
        (YFRateLimitError(), RATE_CAUSE, True),
        (
            curl_exc.ConnectionError(REFUSED, 7),
            "network unreachable (connection failed: ConnectionError)",
            False,
        ),
    ],
    ids=["curl-dns", "gaierror", "timeout", "connect-timeout", "rate-limit", "refused"],
)
def test_request_errors_become_source_unavailable(
    yahoo: FakeYahoo,
    source: YahooSource,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    cause: str,
    transient: bool,
) -> None:
    yahoo.fail("ARM", error)
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM"], d("2026-01-05"), d("2026-01-09"))
    exc = raised.value
    assert (exc.symbol, exc.cause, exc.transient) == ("ARM", cause, transient)
    assert str(exc) == f"source unavailable for ARM: {cause}"
    assert exc.__cause__ is None and exc.__context__ is None
    assert all("\n" not in record.getMessage() for record in caplog.records)
    assert all(timeout <= 30 for _, _, timeout in yahoo.calls)


TRUNCATED = (FIXTURES / "arm_daily.json").read_text()[:400]


@pytest.mark.parametrize(
    ("text", "status", "cause", "transient"),
    [
        ("Too Many Requests", 429, RATE_CAUSE, True),
        (ERROR_PAGE, 500, "Yahoo server error (HTTP 500)", True),
        (ERROR_PAGE, 503, "Yahoo server error (HTTP 503)", True),
        (
            "<html>Will be right back...</html>",
            200,
            "Yahoo Finance is down (maintenance page)",
            True,
        ),
        (TRUNCATED, 200, "invalid JSON from Yahoo (truncated or not JSON)", False),
        ("", 200, "invalid JSON from Yahoo (truncated or not JSON)", False),
    ],
    ids=["http-429", "http-500", "http-503", "maintenance", "truncated", "blank"],
)
def test_bad_responses_become_source_unavailable(
    yahoo: FakeYahoo,
    source: YahooSource,
    text: str,
    status: int,
    cause: str,
    transient: bool,
) -> None:
    yahoo.reply("ARM", text, status)
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM"], d("2026-01-05"), d("2026-01-09"))
    assert (raised.value.symbol, raised.value.cause) == ("ARM", cause)
    assert raised.value.transient is transient


def test_chart_error_payload(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("ARMX", "error_not_found.json", status=404)
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARMX"], d("2026-01-05"), d("2026-01-09"))
    assert raised.value.symbol == "ARMX"
    assert raised.value.cause == ("Yahoo error (HTTP 404): No data found, symbol may be delisted")
    assert raised.value.transient is False


def test_empty_result(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("ARM", "arm_empty.json")
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM"], d("2026-01-03"), d("2026-01-04"))
    assert raised.value.cause == "no bars returned for 2026-01-03..2026-01-04"
    assert raised.value.transient is False


def test_all_null_payload_is_no_bars(yahoo: FakeYahoo, source: YahooSource) -> None:
    payload = json.loads((FIXTURES / "arm_daily.json").read_text())
    result = payload["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    for key in quote:
        quote[key] = [None] * 5
    result["indicators"]["adjclose"][0]["adjclose"] = [None] * 5
    yahoo.reply("ARM", json.dumps(payload), 200)
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM"], d("2026-01-05"), d("2026-01-09"))
    assert raised.value.cause == "no bars returned for 2026-01-05..2026-01-09"


def test_no_bars_within_range(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("ARM", "arm_daily.json")
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM"], d("2026-01-10"), d("2026-01-11"))
    assert raised.value.cause == "no bars returned for 2026-01-10..2026-01-11"


def test_failing_symbol_is_named_and_stops_the_fetch(yahoo: FakeYahoo, tmp_path: Path) -> None:
    source = YahooSource(cache_dir=tmp_path, max_workers=1)
    yahoo.serve("ARM", "arm_daily.json")
    yahoo.fail("JPY=X", curl_exc.DNSError(DNS, 6))
    yahoo.serve("PANW", "panw_split.json")
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM", "JPY=X", "PANW"], d("2026-01-05"), d("2026-01-09"))
    assert raised.value.symbol == "JPY=X"
    assert [call[0] for call in yahoo.calls] == ["ARM", "JPY=X"]


def test_first_failing_symbol_in_order_is_named_whichever_fails_first(yahoo: FakeYahoo, tmp_path: Path) -> None:
    source = YahooSource(cache_dir=tmp_path, max_workers=3)
    yahoo.serve("ARM", "arm_daily.json")
    yahoo.fail("JPY=X", curl_exc.DNSError(DNS, 6), delay=0.3)  # fails last
    yahoo.serve("PANW", "arm_empty.json")  # fails at once
    for symbol in ("AAPL", "MSFT", "NVDA"):
        yahoo.serve(symbol, "arm_daily.json", delay=0.05)
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM", "JPY=X", "PANW", "AAPL", "MSFT", "NVDA"], d("2026-01-05"), d("2026-01-09"))
    assert (raised.value.symbol, raised.value.cause) == ("JPY=X", DNS_CAUSE)
    # Symbols not yet started when PANW failed are never requested.
    assert yahoo.requests("NVDA") == 0


def test_slow_failure_returns_within_bounded_time(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.fail("ARM", curl_exc.Timeout(TIMEOUT, 28), delay=0.3)
    started = time.monotonic()
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM", "JPY=X"], d("2026-01-05"), d("2026-01-09"))
    assert time.monotonic() - started < 30
    assert (raised.value.cause, raised.value.transient) == ("timed out after 10s", False)


def test_hanging_request_cut_off_by_deadline(yahoo: FakeYahoo, tmp_path: Path) -> None:
    source = YahooSource(timeout_seconds=10, deadline_seconds=0.2, cache_dir=tmp_path)
    yahoo.reply("ARM", (FIXTURES / "arm_daily.json").read_text(), 200, delay=8)
    started = time.monotonic()
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM"], d("2026-01-05"), d("2026-01-09"))
    assert time.monotonic() - started < 6  # cut off well before the 8 s reply
    assert (raised.value.cause, raised.value.transient) == ("timed out after 0.2s", False)


def labelled(symbol: str, scale: float) -> str:
    """The recorded ARM chart, as `symbol`'s with every price times `scale`."""
    payload = json.loads((FIXTURES / "arm_daily.json").read_text())
    result = payload["chart"]["result"][0]
    result["meta"]["symbol"] = symbol
    quote = result["indicators"]["quote"][0]
    for name in ("open", "high", "low", "close"):
        quote[name] = [price * scale for price in quote[name]]
    result["indicators"]["adjclose"][0]["adjclose"] = list(quote["close"])
    return json.dumps(payload)


RATE_LIMITED: Answer = (0.0, FakeResponse("Too Many Requests", 429))


def test_rate_limit_is_retried_with_backoff_until_answered(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.serve("ARM", "arm_daily.json")
    yahoo.first("ARM", RATE_LIMITED, (0.0, YFRateLimitError()))
    bars = source.fetch_bars(["ARM"], d("2026-01-05"), d("2026-01-09"))
    assert bars["close"].to_list() == [110.25, 112.5, 109.75, 111.0, 113.4]
    assert yahoo.requests("ARM") == 3


def test_persistent_rate_limit_gives_up_after_the_attempts(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.reply("ARM", "Too Many Requests", 429)
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM"], d("2026-01-05"), d("2026-01-09"))
    assert (raised.value.symbol, raised.value.cause, raised.value.transient) == ("ARM", RATE_CAUSE, True)
    assert yahoo.requests("ARM") == FAST.attempts == 4


def test_other_failures_are_not_retried(yahoo: FakeYahoo, source: YahooSource) -> None:
    yahoo.reply("ARM", ERROR_PAGE, 500)
    with pytest.raises(SourceUnavailable):
        source.fetch_bars(["ARM"], d("2026-01-05"), d("2026-01-09"))
    assert yahoo.requests("ARM") == 1


def test_backoff_stops_before_the_deadline(yahoo: FakeYahoo, tmp_path: Path) -> None:
    slow = Backoff(first_seconds=0.4, jitter=0.0)
    source = YahooSource(deadline_seconds=1.0, cache_dir=tmp_path, backoff=slow)
    yahoo.reply("ARM", "Too Many Requests", 429)
    started = time.monotonic()
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch_bars(["ARM"], d("2026-01-05"), d("2026-01-09"))
    # Waits of 0.4 s and 0.8 s would overrun the 1 s deadline: one retry, then the rate limit is reported.
    assert time.monotonic() - started < 1.0
    assert (raised.value.cause, raised.value.transient) == (RATE_CAUSE, True)
    assert yahoo.requests("ARM") == 2


def test_backoff_delays_double_to_the_cap_with_jitter() -> None:
    backoff = Backoff(first_seconds=1.0, cap_seconds=5.0, jitter=0.5)
    for retry, full in enumerate([1.0, 2.0, 4.0, 5.0, 5.0]):
        delays = [backoff.delay(retry) for _ in range(200)]
        assert all(full / 2 <= delay <= full for delay in delays)
        assert len(set(delays)) > 1
    assert [Backoff(jitter=0.0).delay(retry) for retry in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


SYMBOLS = [f"S{i:03d}" for i in range(60)]


def serve_many(yahoo: FakeYahoo, delay: float) -> None:
    for i, symbol in enumerate(SYMBOLS):
        yahoo.reply(symbol, labelled(symbol, 1 + i / 100), 200, delay)


def test_many_symbols_fetched_in_order_with_bounded_concurrency(yahoo: FakeYahoo, tmp_path: Path) -> None:
    source = YahooSource(cache_dir=tmp_path, max_workers=4)
    serve_many(yahoo, delay=0.01)
    bars = source.fetch_bars(list(reversed(SYMBOLS)), d("2026-01-05"), d("2026-01-09"))
    assert bars["symbol"].to_list() == [symbol for symbol in SYMBOLS for _ in range(5)]
    assert bars["session_date"].to_list()[:5] == bars["session_date"].to_list()[-5:]
    closes = bars.group_by("symbol", maintain_order=True).agg(pl.col("close").last())["close"].to_list()
    assert closes == pytest.approx([113.4 * (1 + i / 100) for i in range(len(SYMBOLS))])
    assert len(yahoo.calls) == len(SYMBOLS)
    assert yahoo.most_in_flight == 4


def test_concurrent_calls_share_the_bound(yahoo: FakeYahoo, tmp_path: Path) -> None:
    source = YahooSource(cache_dir=tmp_path, max_workers=3)
    serve_many(yahoo, delay=0.01)
    batches = [SYMBOLS[i : i + 15] for i in range(0, len(SYMBOLS), 15)]
    with ThreadPoolExecutor(len(batches)) as pool:
        frames = list(pool.map(lambda batch: source.fetch_bars(batch, d("2026-01-05"), d("2026-01-09")), batches))
    assert [frame["symbol"].n_unique() for frame in frames] == [15] * 4
    assert yahoo.most_in_flight == 3


def test_source_pickles_with_its_settings(yahoo: FakeYahoo, tmp_path: Path) -> None:
    source = pickle.loads(pickle.dumps(YahooSource(cache_dir=tmp_path, max_workers=2, backoff=FAST)))
    assert (source.max_workers, source.backoff) == (2, FAST)
    serve_many(yahoo, delay=0.01)
    assert source.fetch_bars(SYMBOLS[:6], d("2026-01-05"), d("2026-01-09"))["symbol"].n_unique() == 6
    assert yahoo.most_in_flight == 2
