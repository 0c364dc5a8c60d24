"""Fetching a book's symbols for one session through the yfinance adapter: one at a time, then concurrently.

Yahoo is replayed behind yfinance's HTTP seam (`YfData.get`): the recorded ARM chart payload, relabelled
per symbol (meta.symbol, prices scaled), so yfinance's own parsing runs for every symbol. Each request
waits a simulated network latency, and a share of them is answered with HTTP 429 for the backoff to absorb.
The sequential arm runs on a sample of the symbols and is scaled to all of them.

Run: `uv run python -m benchmarks.fetch [--symbols 2000] [--runs 3] [--latency-ms 50] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from yfinance.data import YfData

from benchmarks.common import median_seconds, row, write_results
from marginwatch.sources.yahoo import Backoff, YahooSource

PAYLOAD = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "yahoo" / "arm_daily.json"
SESSION = dt.date(2026, 1, 9)  # the payload's last bar


class Response:
    """The parts of a curl_cffi response that yfinance reads."""

    def __init__(self, text: str, status_code: int = 200) -> None:
        self.text = text
        self.status_code = status_code
        self.url = "https://query2.finance.yahoo.com/v8/finance/chart"

    def json(self) -> Any:
        return json.loads(self.text)


def relabelled(template: dict[str, Any], symbol: str, scale: float) -> str:
    """Return the chart payload as `symbol`'s, every price times `scale`."""
    result = json.loads(json.dumps(template["chart"]["result"][0]))
    result["meta"]["symbol"] = symbol
    quote = result["indicators"]["quote"][0]
    for name in ("open", "high", "low", "close"):
        quote[name] = [round(price * scale, 4) for price in quote[name]]
    result["indicators"]["adjclose"][0]["adjclose"] = list(quote["close"])
    return json.dumps({"chart": {"result": [result], "error": None}})


class Replay:
    """Answers chart requests after `latency` seconds, `rate_limited` of them with HTTP 429; counts both."""

    def __init__(self, symbols: list[str], latency: float, rate_limited: float, seed: int = 20260109) -> None:
        template = json.loads(PAYLOAD.read_text())
        self.charts = {symbol: relabelled(template, symbol, 1 + i / len(symbols)) for i, symbol in enumerate(symbols)}
        self.latency = latency
        self.rate_limited = rate_limited
        self.requests = 0
        self.refused = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def installed(self) -> Any:
        """Return a context manager within which this replay answers every `YfData.get`."""
        return mock.patch.object(YfData, "get", lambda data, url, params=None, timeout=30: self.answer(url))

    def answer(self, url: str) -> Response:
        """Answer one chart request; the symbol is the URL's last segment."""
        with self._lock:
            self.requests += 1
            refuse = self._random.random() < self.rate_limited
            self.refused += refuse
        time.sleep(self.latency)
        if refuse:
            return Response("Too Many Requests", 429)
        return Response(self.charts[url.rsplit("/", 1)[-1]])

    def counts(self) -> tuple[int, int]:
        """Return and reset (requests, 429 answers) since the last call."""
        with self._lock:
            counts, self.requests, self.refused = (self.requests, self.refused), 0, 0
        return counts


@dataclass(frozen=True)
class Arm:
    """One way of fetching: `workers` at a time, timed on `sample` symbols and scaled to `total`."""

    label: str
    workers: int
    sample: int
    total: int


def fetch_all(source: YahooSource, symbols: list[str]) -> None:
    """Fetch the session's bar of every symbol, checking one bar came back for each."""
    bars = source.fetch_bars(symbols, SESSION, SESSION)
    if bars.height != len(symbols):
        raise AssertionError(f"{bars.height} bars for {len(symbols)} symbols")


def measure(arm: Arm, symbols: list[str], replay: Replay, runs: int, backoff: Backoff) -> dict[str, Any]:
    """Time the arm's fetch `runs` times; return its result row, times scaled to all symbols."""
    source = YahooSource(max_workers=arm.workers, backoff=backoff)
    sample = symbols[: arm.sample]
    counts: list[tuple[int, int]] = []

    def action() -> None:
        fetch_all(source, sample)
        counts.append(replay.counts())

    replay.counts()
    median, times = median_seconds(action, runs, warmup=0)
    scale = arm.total / arm.sample
    per_second = arm.sample / median
    retries = statistics.median(requests - arm.sample for requests, _ in counts)
    refused = statistics.median(refused for _, refused in counts)
    note = f"{per_second:.1f} symbols/s, {retries:g} rate-limit retries per run"
    result = row(arm.label, median * scale, [t * scale for t in times], note)
    return result | {
        "workers": arm.workers,
        "symbols_timed": arm.sample,
        "symbols_total": arm.total,
        "scaled_by": scale,
        "symbols_per_s": per_second,
        "retries": retries,
        "http_429": refused,
    }


def compare(
    count: int,
    sample: int,
    runs: int,
    latency: float,
    rate_limited: float,
    workers: int,
    backoff: Backoff | None = None,
) -> list[dict[str, Any]]:
    """Return the sequential and the concurrent arm's rows, the second noting the speed-up."""
    backoff = backoff or Backoff()
    symbols = [f"SYM{i:04d}" for i in range(count)]
    replay = Replay(symbols, latency, rate_limited)
    sample = min(sample, count)
    arms = [
        Arm(f"sequential, 1 worker, {sample} of {count} symbols timed, scaled", 1, sample, count),
        Arm(f"concurrent, {workers} workers, {count} symbols", workers, count, count),
    ]
    with replay.installed():
        fetch_all(YahooSource(max_workers=workers, backoff=backoff), symbols[: min(count, 2 * workers)])  # warm-up
        sequential, concurrent = (measure(arm, symbols, replay, runs, backoff) for arm in arms)
    ratio = sequential["median_s"] / concurrent["median_s"]
    concurrent["note"] += f"; {ratio:.1f}x faster"
    concurrent["speedup"] = ratio
    return [sequential, concurrent]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=2000, help="symbols fetched for the session")
    parser.add_argument("--runs", type=int, default=1, help="timed runs per arm; the median is reported")
    parser.add_argument("--latency-ms", type=float, default=50, help="simulated latency of each request")
    parser.add_argument("--rate-limited", type=float, default=0.02, help="share of requests answered HTTP 429")
    parser.add_argument("--sequential-sample", type=int, default=200, help="symbols the sequential arm times")
    parser.add_argument("--workers", type=int, default=8, help="the concurrent arm's max_workers")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    rows = compare(
        args.symbols, args.sequential_sample, args.runs, args.latency_ms / 1000, args.rate_limited, args.workers
    )
    print(
        f"{args.symbols} symbols, one session; {args.latency_ms:g} ms per request, "
        f"{args.rate_limited:.0%} answered HTTP 429; median of {args.runs} run(s); "
        f"sequential times {rows[0]['symbols_timed']} symbols and is scaled by {rows[0]['scaled_by']:g}"
    )
    path = write_results("fetch", rows)
    if args.json:
        shutil.copyfile(path, args.json)
        print(f"copied to {args.json}")


if __name__ == "__main__":
    main()
