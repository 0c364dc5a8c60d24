"""A deterministic synthetic loan book of any size, for the book-scale benchmark.

Loans pledge 1 to 5 lines of symbols `S0001`... (the synthetic source serves any stock symbol);
some loans are in another currency than their collateral, so FX conversion is exercised. Share
counts put each loan near 30% LTV on its first session, so over years of random walks some loans
drift into warning, margin call and liquidation and the alert rules have work to do.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from marginwatch.sources.synthetic import SyntheticSource

CURRENCIES = ["USD", "USD", "USD", "USD", "JPY", "EUR", "GBP"]
USD_RATE = {"USD": 1.0, "JPY": 150.0, "EUR": 0.92, "GBP": 0.79}  # the synthetic source's FX bases
WINDOWS = [1, 1, 1, 5, 20]


def symbol_names(symbols: int) -> list[str]:
    """Return the benchmark's stock symbols."""
    return [f"S{i:04d}" for i in range(1, symbols + 1)]


def book_toml(loans: int, symbols: int, start: dt.date, seed: int = 7) -> str:
    """Return the TOML text of a book of `loans` loans over `symbols` symbols; risk and channels off."""
    rng = np.random.default_rng(seed)
    names = symbol_names(symbols)
    first_close = _first_closes(names, start)
    out = [
        "[settings]",
        'source = "synthetic"',
        "alert_lookback_sessions = 0",
        "backups_kept = 0",
        "[settings.risk]",
        "enabled = false",
    ]
    for i in range(loans):
        lines = int(rng.integers(1, 6))
        picked = rng.choice(len(names), size=min(lines, len(names)), replace=False)
        currency = CURRENCIES[int(rng.integers(len(CURRENCIES)))]
        principal = float(rng.integers(10, 2_000)) * 1e6
        weights = rng.dirichlet(np.ones(len(picked)))
        out += [
            "[[loans]]",
            f'id = "L{i:05d}"',
            f'borrower = "Borrower {i % 997}"',
            f'currency = "{currency}"',
            f"principal = {principal:.0f}",
            f"annual_rate = {0.03 + 0.04 * rng.random():.4f}",
            f"accrual_start = {start.isoformat()}",
            *_valuation(WINDOWS[int(rng.integers(len(WINDOWS)))]),
            f"cure_period_days = {int(rng.integers(2, 6))}",
            "[loans.levels]",
            "warning = 0.50",
            "margin_call = 0.60",
            "liquidation = 0.75",
            "cure_target = 0.45",
        ]
        for k, weight in zip(picked, weights, strict=True):
            value_usd = principal / 0.30 * weight / USD_RATE[currency]
            shares = max(1.0, round(value_usd / first_close[int(k)]))
            out += ["[[loans.collateral]]", f'symbol = "{names[int(k)]}"', 'currency = "USD"', f"shares = {shares:.0f}"]
    return "\n".join(out) + "\n"


def _valuation(window: int) -> list[str]:
    return ['valuation = "avg_close"', f"valuation_window = {window}"] if window > 1 else []


def _first_closes(names: list[str], start: dt.date) -> list[float]:
    bars = SyntheticSource().fetch_bars(names, start, start + dt.timedelta(days=7))
    first = bars.sort("session_date").group_by("symbol", maintain_order=True).first()
    closes = dict(zip(first["symbol"].to_list(), first["close"].to_list(), strict=True))
    return [float(closes[n]) for n in names]
