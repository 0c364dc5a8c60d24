"""Daily collateral returns and their EWMA volatility, as dense (loan x session) arrays (pure).

The EWMA is RiskMetrics' (lambda 0.94) over a fixed window of past returns, weights normalised
over the returns present. A fixed window makes each day's figure depend on that day's window
only, so a daily run and a backfill compute the same number, bit for bit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class ReturnGrid:
    """Daily log returns of each loan's collateral value on the session grid; NaN where unpriced."""

    loan_ids: list[str]
    sessions: list[dt.date]
    returns: np.ndarray  # (loan, session): log(value_t / value_t-1)

    def positions(self, loan_ids: pl.Series, days: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """Return the (row, column) of each (loan, day) pair."""
        return _index(loan_ids, self.loan_ids), _index(days, self.sessions)


def _index(values: pl.Series, ordered: Sequence[object]) -> np.ndarray:
    """Return each value's position in `ordered` (sorted, holding every value)."""
    keys = pl.Series(ordered, dtype=values.dtype)
    return keys.search_sorted(values).to_numpy().astype(np.int64)


def return_grid(values: pl.DataFrame, sessions: list[dt.date]) -> ReturnGrid:
    """Return the log returns of `values` (loan_id, session_date, value) on the session grid."""
    loan_ids = sorted(values["loan_id"].unique().to_list())
    grid = np.full((len(loan_ids), len(sessions)), np.nan)
    known = values.filter(pl.col("session_date").is_in(sessions))
    grid[_index(known["loan_id"], loan_ids), _index(known["session_date"], sessions)] = known["value"].to_numpy()
    returns = np.full_like(grid, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        returns[:, 1:] = np.log(grid[:, 1:] / grid[:, :-1])
    returns[~np.isfinite(returns)] = np.nan
    return ReturnGrid(loan_ids, sessions, returns)


def ewma_variance(returns: np.ndarray, decay: float, window: int, min_returns: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (variance forecast for the next session, returns used) at every cell of `returns`.

    The forecast at column t uses the returns of columns t-window+1..t; NaN below `min_returns`.
    """
    squares = np.nan_to_num(returns**2)
    present = (~np.isnan(returns)).astype(np.float64)
    weighted = np.zeros_like(squares)
    weights = np.zeros_like(squares)
    count = np.zeros_like(squares)
    sessions = returns.shape[1]
    for lag in range(min(window, sessions)):  # a fixed order of additions: the same bits in any run
        w = decay**lag
        weighted[:, lag:] += w * squares[:, : sessions - lag]
        weights[:, lag:] += w * present[:, : sessions - lag]
        count[:, lag:] += present[:, : sessions - lag]
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.where(count >= min_returns, weighted / weights, np.nan)
    return variance, count


def standardised_returns(returns: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Return each return divided by the volatility forecast made the session before (NaN without one)."""
    previous = np.full_like(variance, np.nan)
    previous[:, 1:] = variance[:, :-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = returns / np.sqrt(previous)
    scaled[~np.isfinite(scaled)] = np.nan
    return scaled


def residual_pools(
    standardised: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return each (row, col)'s last `size` standardised returns, left-aligned, and how many are real."""
    offsets = cols[:, None] - size + 1 + np.arange(size)
    windows = np.where(offsets >= 0, standardised[rows[:, None], np.maximum(offsets, 0)], np.nan)
    real = ~np.isnan(windows)
    order = np.argsort(~real, axis=1, kind="stable")  # real values first, in their order
    pools = np.nan_to_num(np.take_along_axis(windows, order, axis=1))
    return pools, real.sum(axis=1).astype(np.int64)
