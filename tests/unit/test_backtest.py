"""Backtest of the hit-probability estimators against realised falls."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from marginwatch import calendar
from transforms.backtest import calibrate_backtest, predict_falls, summarise_backtest
from transforms.risk import RiskModel

SESSIONS = calendar.sessions_between(dt.date(2023, 1, 3), dt.date(2024, 12, 31)).to_list()


def closes(values: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"session_date": SESSIONS[: len(values)], "close": values})


def test_a_fall_counts_for_the_ten_sessions_before_it_and_no_others() -> None:
    rng = np.random.default_rng(2)
    path = 100 * np.exp(np.cumsum(rng.standard_normal(200) * 0.002))  # too calm to fall 20% by chance
    path[150:] *= 0.7  # one 30% gap down on session 150
    days = predict_falls(closes(path), SESSIONS[:200], RiskModel(), 0.20, 10)
    happened = days.filter(pl.col("happened"))["session_date"].to_list()
    assert happened == SESSIONS[140:150]
    assert days["session_date"][0] == SESSIONS[20]  # the first day with 20 returns behind it
    assert days["session_date"][-1] == SESSIONS[189]  # the last day with ten sessions after it


def test_volatile_days_predict_more_falls_than_calm_ones() -> None:
    rng = np.random.default_rng(3)
    vol = np.where(np.arange(500) < 250, 0.01, 0.05)
    path = 100 * np.exp(np.cumsum(rng.standard_normal(500) * vol))
    days = predict_falls(closes(path), SESSIONS[:500], RiskModel(), 0.20, 10)
    calm = days.filter(pl.col("session_date") < SESSIONS[240])
    wild = days.filter(pl.col("session_date") > SESSIONS[300])
    for method in ("ewma_mc", "filtered_bootstrap"):
        assert calm[method].mean() < 0.001 < 0.05 < wild[method].mean()


def test_the_summary_counts_days_events_and_episodes_and_scores_each_method() -> None:
    days = pl.DataFrame(
        {
            "session_date": SESSIONS[:6],
            "sigma_1d": [0.02] * 6,
            "ewma_mc": [0.1, 0.2, 0.3, 0.0, 0.1, 0.5],
            "filtered_bootstrap": [None, 0.2, 0.3, 0.0, 0.1, 0.5],
            "happened": [False, True, True, False, False, True],
        }
    )
    summary = {r["method"]: r for r in summarise_backtest(days).iter_rows(named=True)}
    mc = summary["ewma_mc"]
    assert (mc["days"], mc["events"], mc["episodes"]) == (6, 3, 2)
    assert mc["mean_predicted"] == pytest.approx(0.2)
    assert mc["brier"] == pytest.approx((0.01 + 0.64 + 0.49 + 0 + 0.01 + 0.25) / 6)
    assert summary["filtered_bootstrap"]["days"] == 5
    buckets = calibrate_backtest(days).filter(pl.col("method") == "ewma_mc")
    assert buckets["days"].sum() == 6
    assert buckets.filter(pl.col("bucket") == "20%-100%").select("days", "events").row(0) == (3, 3)
