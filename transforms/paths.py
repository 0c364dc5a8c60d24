"""Simulated collateral paths: EWMA volatility carried forward along each path (pure numpy).

A path's log return on step k is sigma_k * e_k with sigma_{k+1}^2 = decay * sigma_k^2 + (1 - decay) *
(sigma_k * e_k)^2, so every path is today's volatility times a function of its innovations alone.
That scale invariance lets one seeded set of normal paths serve every loan and day exactly (common
random numbers): a loan hits a level within h sessions when the path's running minimum, in units of
today's volatility, falls to log(level value / value) / sigma.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HORIZONS = (1, 5, 10, 21)
VAR_HORIZONS = (1, 10)


def simulate(innovations: np.ndarray, decay: float) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Return running minima at each horizon and cumulative returns at each VaR horizon, in volatility units.

    `innovations` has the steps first (step x path x ...); one step at a time keeps every
    operation on a contiguous block and never holds the whole path array.
    """
    variance = np.ones(innovations.shape[1:])
    total = np.zeros(innovations.shape[1:])
    lowest = np.full(innovations.shape[1:], np.inf)
    minima, returns = {}, {}
    for step, shock in enumerate(innovations, start=1):
        total += np.sqrt(variance) * shock
        np.minimum(lowest, total, out=lowest)
        variance *= decay + (1.0 - decay) * shock**2
        if step in HORIZONS:
            minima[step] = lowest.copy()
        if step in VAR_HORIZONS:
            returns[step] = total.copy()
    return minima, returns


@dataclass(frozen=True)
class NormalPaths:
    """Seeded normal-innovation paths reduced to what every loan-day needs: sorted minima and return quantiles."""

    sorted_minima: dict[int, np.ndarray]  # horizon -> ascending running minima at that step
    return_quantile: dict[int, float]  # horizon -> the (1 - confidence) quantile of the cumulative return
    paths: int

    @classmethod
    def simulate(cls, paths: int, decay: float, seed: int, confidence: float) -> NormalPaths:
        """Return the reduced table of `paths` seeded normal paths over the longest horizon."""
        rng = np.random.default_rng([seed, 0])
        minima, returns = simulate(rng.standard_normal((max(HORIZONS), paths)), decay)
        return cls(
            {h: np.sort(low) for h, low in minima.items()},
            {h: float(np.quantile(total, 1.0 - confidence)) for h, total in returns.items()},
            paths,
        )

    def hit_probability(self, horizon: int, thresholds: np.ndarray) -> np.ndarray:
        """Return the share of paths whose running minimum reaches each threshold (in volatility units)."""
        hits = np.searchsorted(self.sorted_minima[horizon], thresholds, side="right")
        return hits / self.paths


def bootstrap_uniforms(paths: int, seed: int) -> np.ndarray:
    """Return the seeded uniforms that pick bootstrap draws: one per step and path."""
    return np.random.default_rng([seed, 1]).random((max(HORIZONS), paths))


def bootstrap_chunk(
    pools: np.ndarray,
    sizes: np.ndarray,
    uniforms: np.ndarray,
    thresholds: dict[str, np.ndarray],
    decay: float,
    confidence: float,
) -> tuple[dict[str, dict[int, np.ndarray]], dict[int, np.ndarray]]:
    """Return hit probabilities per level and horizon, and return quantiles, for a chunk of loan-days.

    `pools` (loan-day x pool) holds each loan-day's standardised past returns left-aligned,
    `sizes` how many are real; draws are `pools[i, floor(u * sizes[i])]` for the shared uniforms.
    """
    if (sizes == sizes[0]).all():  # the usual case, a full pool each: one set of picks for the chunk
        picks = np.minimum((uniforms * sizes[0]).astype(np.intp), sizes[0] - 1)
        draws = np.ascontiguousarray(pools.T)[picks]  # step x path x loan-day
    else:
        picks = np.minimum((uniforms[:, :, None] * sizes).astype(np.intp), sizes - 1)
        draws = pools[np.arange(len(sizes)), picks]
    minima, returns = simulate(draws, decay)
    probabilities = {
        level: {h: (low <= limit).mean(axis=0) for h, low in minima.items()} for level, limit in thresholds.items()
    }
    quantiles = {h: np.quantile(total, 1.0 - confidence, axis=0) for h, total in returns.items()}
    return probabilities, quantiles
