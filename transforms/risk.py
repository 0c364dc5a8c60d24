"""Forward-looking risk per loan and day: hit probabilities, value-at-risk, days of cover, trigger prices.

Both methods share the collateral's own history (the joint history of every pledged line and its
FX rate, valued at today's holdings) and its EWMA volatility; they differ in the innovations:
`ewma_mc` draws normal ones, `filtered_bootstrap` draws the collateral's past returns divided by
the volatility of their day (filtered historical simulation).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from transforms.ltv import value_collateral_lines
from transforms.paths import HORIZONS, NormalPaths, bootstrap_chunk, bootstrap_uniforms
from transforms.volatility import ReturnGrid, ewma_variance, residual_pools, return_grid, standardised_returns

METHODS = ("ewma_mc", "filtered_bootstrap")
LEVEL_COLUMNS = {"margin_call": "margin_call_ltv", "liquidation": "liquidation_ltv"}
CHUNK_LOAN_DAYS = 64  # bootstrap loan-days simulated at once: 21 steps x 10,000 paths x 64 ~ 108 MB of draws

RISK_SCHEMA: dict[str, pl.DataType] = {
    "loan_id": pl.String(),
    "as_of_date": pl.Date(),
    "method": pl.String(),
    "currency": pl.String(),
    "collateral_value": pl.Float64(),
    "returns_used": pl.Int32(),
    "sigma_1d": pl.Float64(),
    "paths": pl.Int32(),
    "seed": pl.Int64(),
    "var_1d_99": pl.Float64(),
    "var_10d_99": pl.Float64(),
    **{f"p_{level}_{h}d": pl.Float64() for level in LEVEL_COLUMNS for h in HORIZONS},
    "days_of_cover": pl.Float64(),
    "cure_period_days": pl.Int32(),
    "fall_to_warning": pl.Float64(),
    "fall_to_margin_call": pl.Float64(),
    "fall_to_liquidation": pl.Float64(),
    "warning_price": pl.Float64(),
    "margin_call_price": pl.Float64(),
    "liquidation_price": pl.Float64(),
}


@dataclass(frozen=True)
class RiskModel:
    """How risk is estimated; the defaults are RiskMetrics' daily ones."""

    decay: float = 0.94
    ewma_sessions: int = 250  # past returns in the volatility (older weights are below 2e-7 of the total)
    pool_sessions: int = 500  # standardised past returns the bootstrap draws from
    min_returns: int = 20
    paths: int = 10_000
    seed: int = 20250911
    confidence: float = 0.99

    @property
    def lookback_sessions(self) -> int:
        """Return the sessions of history before a day that its figures depend on."""
        return self.ewma_sessions + self.pool_sessions + 1


def collateral_values(
    loans: pl.DataFrame,
    collateral: pl.DataFrame,
    sessions: list[dt.date],
    prices: pl.DataFrame,
    fx_rates: pl.DataFrame,
) -> pl.DataFrame:
    """Return each loan's collateral at market close, and the part in a foreign currency (grain: loan x session)."""
    close_basis = loans.with_columns(valuation_window=pl.lit(1, pl.Int32))
    grid = pl.DataFrame({"as_of_date": sessions}, schema={"as_of_date": pl.Date()})
    lines = value_collateral_lines(close_basis.lazy(), collateral.lazy(), grid.lazy(), prices.lazy(), fx_rates.lazy())
    return (
        lines.group_by("loan_id", "as_of_date")
        .agg(
            value=pl.col("line_value").sum(),
            foreign_value=pl.col("line_value").filter(pl.col("pair").is_not_null()).sum(),
            _unpriced=pl.col("line_value").is_null().sum(),
        )
        .filter(pl.col("_unpriced") == 0)
        .select("loan_id", pl.col("as_of_date").alias("session_date"), "value", "foreign_value")
        .sort("loan_id", "session_date")
        .collect()
    )


def level_distances(ltv: pl.DataFrame) -> pl.DataFrame:
    """Return the uniform price fall to each level and the share price there (grain: loan x as-of date)."""
    # numpy, not Polars expressions: Polars rounded these a bit differently inside a flow's task
    # threads than outside, and a day's figures must not depend on the run that computed them.
    current, price = ltv["ltv"].to_numpy(), ltv["price"].to_numpy()
    figures = {}
    for level in ("warning", "margin_call", "liquidation"):
        ratio = current / ltv[f"{level}_ltv"].to_numpy()
        figures[f"fall_to_{level}"] = np.maximum(1.0 - ratio, 0.0)
        figures[f"{level}_price"] = pl.Series(price * ratio, dtype=pl.Float64).fill_nan(None)
    return ltv.select("loan_id", "as_of_date").with_columns(**figures)


def compute_loan_risk(
    ltv: pl.DataFrame, values: pl.DataFrame, sessions: list[dt.date], cure_days: pl.DataFrame, model: RiskModel
) -> pl.DataFrame:
    """Return both methods' risk figures for every LTV row (grain: loan x as-of date x method).

    `values` must cover `model.lookback_sessions` sessions before the first as-of date for the
    figures to be complete; with less history they rest on fewer returns (`returns_used`).
    """
    grid = return_grid(values, sessions)
    days = (
        ltv.join(values.rename({"session_date": "as_of_date"}), on=["loan_id", "as_of_date"])
        .join(cure_days, on="loan_id")
        .sort("loan_id", "as_of_date")
    )
    if not days.height:
        return pl.DataFrame(schema=RISK_SCHEMA)
    variance, count = ewma_variance(grid.returns, model.decay, model.ewma_sessions, model.min_returns)
    rows, cols = grid.positions(days["loan_id"], days["as_of_date"])
    sigma = np.sqrt(variance[rows, cols])
    base = days.select("loan_id", "as_of_date", "currency", pl.col("value").alias("collateral_value")).with_columns(
        returns_used=pl.Series(count[rows, cols], dtype=pl.Int32),
        sigma_1d=pl.Series(sigma, dtype=pl.Float64).fill_nan(None),
        paths=pl.lit(model.paths, pl.Int32),
        seed=pl.lit(model.seed, pl.Int64),
    )
    cushion = {level: np.log(days["ltv"].to_numpy() / days[col].to_numpy()) for level, col in LEVEL_COLUMNS.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        limits = {level: np.minimum(c, 0.0) / sigma for level, c in cushion.items()}
        cover = np.where(cushion["margin_call"] < 0, -cushion["margin_call"] / sigma, 0.0)
    normal = NormalPaths.simulate(model.paths, model.decay, model.seed, model.confidence)
    mc = {level: {h: normal.hit_probability(h, limit) for h in HORIZONS} for level, limit in limits.items()}
    mc_quantiles = {h: np.full(len(sigma), q) for h, q in normal.return_quantile.items()}
    fhs, fhs_quantiles = _bootstrap(grid, rows, cols, variance, limits, model)
    extra = level_distances(days).join(
        days.select("loan_id", "as_of_date", "cure_period_days"), on=["loan_id", "as_of_date"]
    )
    frames = []
    for method, probabilities, quantiles in (("ewma_mc", mc, mc_quantiles), ("filtered_bootstrap", fhs, fhs_quantiles)):
        figures = {
            f"p_{level}_{h}d": _only_with_sigma(np.where(cushion[level] >= 0, 1.0, probabilities[level][h]), sigma)
            for level in LEVEL_COLUMNS
            for h in HORIZONS
        }
        value = days["value"].to_numpy()
        figures["var_1d_99"] = _only_with_sigma(value * -np.expm1(sigma * quantiles[1]), sigma)
        figures["var_10d_99"] = _only_with_sigma(value * -np.expm1(sigma * quantiles[10]), sigma)
        figures["days_of_cover"] = _only_with_sigma(cover, sigma)
        frames.append(base.with_columns(method=pl.lit(method), **figures))
    out = pl.concat(frames).join(extra, on=["loan_id", "as_of_date"])
    return out.select([pl.col(name).cast(dtype) for name, dtype in RISK_SCHEMA.items()]).sort(
        "loan_id", "as_of_date", "method"
    )


def _only_with_sigma(values: np.ndarray, sigma: np.ndarray) -> pl.Series:
    """Return `values` as a column, null where no volatility could be estimated."""
    return pl.Series(np.where(np.isfinite(sigma), values, np.nan), dtype=pl.Float64).fill_nan(None)


def _bootstrap(
    grid: ReturnGrid,
    rows: np.ndarray,
    cols: np.ndarray,
    variance: np.ndarray,
    limits: dict[str, np.ndarray],
    model: RiskModel,
) -> tuple[dict[str, dict[int, np.ndarray]], dict[int, np.ndarray]]:
    """Return the filtered bootstrap's probabilities and return quantiles for every loan-day."""
    n = len(rows)
    probabilities = {level: {h: np.full(n, np.nan) for h in HORIZONS} for level in limits}
    quantiles = {h: np.full(n, np.nan) for h in (1, 10)}
    standardised = standardised_returns(grid.returns, variance)
    pools, sizes = residual_pools(standardised, rows, cols, model.pool_sessions)
    uniforms = bootstrap_uniforms(model.paths, model.seed)
    usable = np.flatnonzero((sizes >= model.min_returns) & np.isfinite(variance[rows, cols]))
    for start in range(0, usable.size, CHUNK_LOAN_DAYS):
        part = usable[start : start + CHUNK_LOAN_DAYS]
        chunk_limits = {level: np.nan_to_num(limit[part], nan=0.0) for level, limit in limits.items()}
        p, q = bootstrap_chunk(pools[part], sizes[part], uniforms, chunk_limits, model.decay, model.confidence)
        for level in limits:
            for h in HORIZONS:
                probabilities[level][h][part] = p[level][h]
        for h in quantiles:
            quantiles[h][part] = q[h]
    return probabilities, quantiles
