"""The fetch benchmark's replay and its two arms, at a size that runs in a second or two."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from benchmarks.fetch import SESSION, Replay, compare, main
from marginwatch.sources.yahoo import Backoff, YahooSource

FAST = Backoff(first_seconds=0.001, cap_seconds=0.004)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any socket connection: the replay must answer every request."""

    def refuse(sock: socket.socket, address: object) -> None:
        raise AssertionError(f"benchmark tried to reach the network: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_replay_serves_each_symbol_its_own_scaled_chart(tmp_path: Path) -> None:
    replay = Replay(["AAA", "BBB"], latency=0.0, rate_limited=0.0)
    with replay.installed():
        bars = YahooSource(cache_dir=tmp_path).fetch_bars(["BBB", "AAA"], SESSION, SESSION)
    assert bars.select("symbol", "session_date").rows() == [("AAA", SESSION), ("BBB", SESSION)]
    assert bars["close"].to_list() == pytest.approx([113.4, 113.4 * 1.5])
    assert replay.counts() == (2, 0)


def test_rate_limited_answers_are_absorbed_by_the_backoff(tmp_path: Path) -> None:
    replay = Replay([f"S{i}" for i in range(40)], latency=0.0, rate_limited=0.25, seed=1)
    with replay.installed():
        YahooSource(cache_dir=tmp_path, max_workers=4, backoff=Backoff(attempts=20, first_seconds=0.001)).fetch_bars(
            list(replay.charts), SESSION, SESSION
        )
    requests, refused = replay.counts()
    assert refused > 0 and requests == 40 + refused


def test_compare_times_both_arms_and_scales_the_sequential_sample() -> None:
    sequential, concurrent = compare(
        count=24, sample=6, runs=2, latency=0.03, rate_limited=0.0, workers=4, backoff=FAST
    )
    assert (sequential["workers"], sequential["symbols_timed"], sequential["scaled_by"]) == (1, 6, 4)
    assert (concurrent["workers"], concurrent["symbols_timed"], concurrent["scaled_by"]) == (4, 24, 1)
    assert sequential["retries"] == concurrent["retries"] == 0
    assert concurrent["speedup"] == pytest.approx(sequential["median_s"] / concurrent["median_s"])
    assert concurrent["speedup"] > 1.5


def test_main_prints_the_table_and_writes_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--symbols", "8", "--sequential-sample", "4", "--latency-ms", "1", "--rate-limited", "0"]
    main([*args, "--json", str(tmp_path / "out.json")])
    out = capsys.readouterr().out
    assert "sequential times 4 symbols and is scaled by 2" in out and "x faster" in out
    written = json.loads((tmp_path / "out.json").read_text())
    assert [r["symbols_total"] for r in written["rows"]] == [8, 8]
    assert written == json.loads((tmp_path / "bench-results" / "fetch.json").read_text())
