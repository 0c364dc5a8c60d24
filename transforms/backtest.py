"""Backtest of the hit-probability estimators: predicted against realised falls over a price history (pure)."""

from __future__ import annotations

import datetime as dt
import itertools
import warnings

import numpy as np
import polars as pl

from transforms.paths import HORIZONS, NormalPaths, bootstrap_chunk, bootstrap_uniforms
from transforms.risk import CHUNK_LOAN_DAYS, RiskModel
from transforms.volatility import ewma_variance, residual_pools, return_grid, standardised_returns

BUCKETS = (0.0, 0.01, 0.05, 0.10, 0.20, 1.0)


def predict_falls(
    closes: pl.DataFrame, sessions: list[dt.date], model: RiskModel, fall: float, horizon: int
) -> pl.DataFrame:
    """Return each day's predicted chance of a close `fall` or more below today's within `horizon` sessions,
    by both methods, and whether it happened (grain: session with `horizon` sessions of future).

    `closes` holds (session_date, close) of one symbol; a day is scored once the volatility
    rests on `model.min_returns` returns.
    """
    if horizon not in HORIZONS:
        raise ValueError(f"horizon must be one of {HORIZONS}, got {horizon}")
    values = closes.select(pl.lit("x").alias("loan_id"), "session_date", pl.col("close").alias("value"))
    grid = return_grid(values, sessions)
    variance, _ = ewma_variance(grid.returns, model.decay, model.ewma_sessions, model.min_returns)
    level = np.full(len(sessions), np.nan)
    index = {day: i for i, day in enumerate(sessions)}
    level[[index[d] for d in values["session_date"].to_list()]] = values["value"].to_numpy()
    ahead = np.lib.stride_tricks.sliding_window_view(level[1:], horizon)  # row i: the sessions after i
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window before the listing
        future_low = np.nanmin(ahead, axis=1)
    days = np.flatnonzero(np.isfinite(variance[0, : len(future_low)]) & np.isfinite(level[: len(future_low)]))
    sigma = np.sqrt(variance[0, days])
    limit = np.log1p(-fall) / sigma
    normal = NormalPaths.simulate(model.paths, model.decay, model.seed, model.confidence)
    standardised = standardised_returns(grid.returns, variance)
    pools, sizes = residual_pools(standardised, np.zeros(len(days), dtype=np.int64), days, model.pool_sessions)
    uniforms = bootstrap_uniforms(model.paths, model.seed)
    bootstrap = np.full(len(days), np.nan)
    for start in range(0, len(days), CHUNK_LOAN_DAYS):
        part = slice(start, start + CHUNK_LOAN_DAYS)
        p, _ = bootstrap_chunk(pools[part], sizes[part], uniforms, {"fall": limit[part]}, model.decay, 0.99)
        bootstrap[part] = p["fall"][horizon]
    return pl.DataFrame(
        {
            "session_date": [sessions[i] for i in days],
            "sigma_1d": sigma,
            "ewma_mc": normal.hit_probability(horizon, limit),
            "filtered_bootstrap": np.where(sizes >= model.min_returns, bootstrap, np.nan),
            "happened": future_low[days] <= level[days] * (1 - fall),
        }
    ).with_columns(pl.col("filtered_bootstrap").fill_nan(None))


def summarise_backtest(days: pl.DataFrame) -> pl.DataFrame:
    """Return per method: days scored, mean predicted chance, realised frequency, Brier score (grain: method)."""
    rows = []
    for method in ("ewma_mc", "filtered_bootstrap"):
        scored = days.filter(pl.col(method).is_not_null())
        hit = scored["happened"].cast(pl.Float64)
        predicted = scored[method]
        rows.append(
            {
                "method": method,
                "days": scored.height,
                "events": int(hit.sum()),
                "episodes": int((scored["happened"] & ~scored["happened"].shift(1, fill_value=False)).sum()),
                "mean_predicted": predicted.mean(),
                "realised": hit.mean(),
                "brier": ((predicted - hit) ** 2).mean(),
                "brier_base_rate": ((hit - (hit.mean() or 0.0)) ** 2).mean(),  # always forecasting the base rate
            }
        )
    return pl.DataFrame(rows)


def calibrate_backtest(days: pl.DataFrame) -> pl.DataFrame:
    """Return predicted against realised frequency per bucket of predicted chance (grain: method x bucket)."""
    edges = list(BUCKETS)
    labels = [f"{lo:.0%}-{hi:.0%}" for lo, hi in itertools.pairwise(edges)]
    frames = []
    for method in ("ewma_mc", "filtered_bootstrap"):
        scored = days.filter(pl.col(method).is_not_null()).with_columns(
            bucket=pl.col(method).cut(edges[1:-1], labels=labels, left_closed=True)
        )
        frames.append(
            scored.group_by("bucket")
            .agg(
                days=pl.len(),
                mean_predicted=pl.col(method).mean(),
                events=pl.col("happened").sum(),
                realised=pl.col("happened").cast(pl.Float64).mean(),
            )
            .with_columns(method=pl.lit(method), bucket=pl.col("bucket").cast(pl.String))
            .sort("mean_predicted")
        )
    return pl.concat(frames).select("method", "bucket", "days", "mean_predicted", "events", "realised")
