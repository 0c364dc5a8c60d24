"""Gating and staging a book's bars in batches of whole symbols gives the verdict and staging of one batch."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from flows import tasks
from marginwatch.sources.synthetic import SyntheticSource
from transforms.staging import FX_SCHEMA, PRICE_SCHEMA, label_raw_bars

D = dt.date.fromisoformat
STOCKS = ["ARM", "S0001", "S0002", "S0003", "S0004", "S0005"]
FX = ["JPY=X", "EURUSD=X"]


def incoming() -> pl.DataFrame:
    bars = SyntheticSource().fetch_bars([*STOCKS, *FX], D("2025-01-02"), D("2025-06-30"))
    broken = (pl.col("symbol") == "S0002") & (pl.col("session_date") == D("2025-03-03"))
    jump = (pl.col("symbol") == "S0004") & (pl.col("session_date") == D("2025-04-01"))
    prices = ["open", "high", "low", "close", "adj_close"]
    bars = bars.with_columns([pl.when(jump).then(pl.col(c) * 1.5).otherwise(pl.col(c)).alias(c) for c in prices])
    bars = bars.with_columns(close=pl.when(broken).then(-1.0).otherwise(pl.col("close")))
    return label_raw_bars(bars, "synthetic", "run-1", dt.datetime(2025, 7, 1, tzinfo=dt.UTC))


def gate(
    raw: pl.DataFrame, rows: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[tasks.Verdict, pl.DataFrame, pl.DataFrame]:
    monkeypatch.setattr(tasks, "GATE_ROWS", rows)
    history = (pl.DataFrame(schema=PRICE_SCHEMA), pl.DataFrame(schema=FX_SCHEMA))
    verdict, (prices, rates) = tasks.gate_and_stage(raw, history, D("2025-06-30"), 0.25, "run-1")
    return verdict, prices.sort("symbol", "session_date"), rates.sort("pair", "session_date")


@pytest.mark.usefixtures("prefect_harness")
def test_batches_of_whole_symbols_give_the_same_verdict_and_staging(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = incoming()
    batches = list(tasks._symbol_batches(raw, 300))
    assert len(batches) >= 3
    assert (
        batches[0].filter(pl.col("symbol").str.ends_with("=X")).height
        == raw.filter(pl.col("symbol").str.ends_with("=X")).height
    )  # every FX bar in the first batch
    symbols = [set(batch["symbol"].unique()) for batch in batches]
    assert all(not (a & b) for i, a in enumerate(symbols) for b in symbols[i + 1 :])  # no symbol split

    whole, whole_prices, whole_rates = gate(raw, 1_000_000, monkeypatch)
    batched, batched_prices, batched_rates = gate(raw, 300, monkeypatch)

    assert whole.blocked_symbols == batched.blocked_symbols == ["S0002"]
    assert whole.blocked_pairs == batched.blocked_pairs
    assert batched_prices.equals(whole_prices)
    assert batched_rates.equals(whole_rates)
    assert batched_rates.group_by("pair", "session_date").len()["len"].max() == 1
    assert batched_prices.filter(pl.col("is_unconfirmed"))["symbol"].unique().to_list() == ["S0004"]
    order = ["symbol", "session_date"]
    assert batched.quarantined.sort(order).equals(whole.quarantined.sort(order))
    keys = ["suite", "check_name"]
    sample = "observed_value"  # the first failing batch's sample of unexpected values, as with parts
    assert batched.results.drop(sample).sort(keys).equals(whole.results.drop(sample).sort(keys))
    moves = batched.results.filter(pl.col("check_name") == "move_within_bound")
    assert moves["unexpected_count"].item() > 0 and not moves["success"].item()
