"""Daily collateral returns and their EWMA volatility, as dense (loan x session) arrays (pure).

The EWMA is RiskMetrics' (lambda 0.94) over a fixed window of past returns, weights normalised
over the returns present. A fixed window makes each day's figure depend on that day's window
only, so a daily run and a backfill compute the same number, bit for bit.
"""

from __future__ import annotations

import datetime as dt
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
        rows = {loan: i for i, loan in enumerate(self.loan_ids)}
        cols = {day: j for j, day in enumerate(self.sessions)}
        return (
            np.array([rows[loan] for loan in loan_ids.to_list()], dtype=np.int64),
            np.array([cols[day] for day in days.to_list()], dtype=np.int64),
        )


def return_grid(values: pl.DataFrame, sessions: list[dt.date]) -> ReturnGrid:
    """Return the log returns of `values` (loan_id, session_date, value) on the session grid."""
    loan_ids = sorted(values["loan_id"].unique().to_list())
    grid = np.full((len(loan_ids), len(sessions)), np.nan)
    rows = {loan: i for i, loan in enumerate(loan_ids)}
    cols = {day: j for j, day in enumerate(sessions)}
    known = values.filter(pl.col("session_date").is_in(sessions))
    grid[
        np.array([rows[x] for x in known["loan_id"].to_list()], dtype=np.int64),
        np.array([cols[d] for d in known["session_date"].to_list()], dtype=np.int64),
    ] = known["value"].to_numpy()
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
    pools = np.zeros((len(rows), size))
    sizes = np.zeros(len(rows), dtype=np.int64)
    for i, (row, col) in enumerate(zip(rows, cols, strict=True)):
        window = standardised[row, max(0, col - size + 1) : col + 1]
        real = window[~np.isnan(window)]
        pools[i, : real.size] = real
        sizes[i] = real.size
    return pools, sizes
