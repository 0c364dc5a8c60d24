"""What forward-looking risk costs: a daily run with and without it, and how it grows with loans x paths.

Run: `make bench` (or `uv run python -m benchmarks.risk --runs 3`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.common import median_seconds, row, write_results
from marginwatch import calendar
from marginwatch.config import EMBEDDED_BOOK, Book, load_book
from transforms.risk import RiskModel, compute_loan_risk

AS_OF = dt.date(2026, 3, 31)


def with_risk(book: Book, enabled: bool) -> Book:
    """Return the book with risk turned on or off."""
    risk = book.settings.risk.model_copy(update={"enabled": enabled})
    return book.model_copy(update={"settings": book.settings.model_copy(update={"risk": risk})})


def daily_runs(runs: int) -> list[dict[str, object]]:
    """Time the default book's daily run of one session, risk on and off, alternating, on copies of one warehouse."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.daily import daily

    book = load_book(EMBEDDED_BOOK)
    quiet = book.model_copy(update={"channels": []})
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        seed = Path(tmp) / "seed.duckdb"
        daily(quiet, str(seed), "synthetic", calendar.sessions_back(AS_OF, 1))
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(runs + 1):  # the first pair warms up imports and the GX context
            for enabled in (True, False):
                copy = Path(tmp) / f"run-{i}-{enabled}.duckdb"
                shutil.copy(seed, copy)
                median, _ = median_seconds(
                    lambda c=copy, e=enabled: daily(with_risk(quiet, e), str(c), "synthetic", AS_OF), 1, warmup=0
                )
                if i:
                    times[enabled].append(median)
    on, off = float(np.median(times[True])), float(np.median(times[False]))
    return [
        row("daily run, default book, risk on", on, times[True], f"adds {on - off:+.3f} s to the run"),
        row("daily run, default book, risk off", off, times[False], f"risk on / off = {on / off:.2f}x"),
    ]


def synthetic_book(loans: int, sessions: list[dt.date]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Return (LTV rows for the last session, collateral values, cure periods) for `loans` random-walk loans."""
    rng = np.random.default_rng(loans)
    vols = rng.uniform(0.01, 0.05, loans)
    walks = np.exp(np.cumsum(rng.standard_normal((loans, len(sessions))) * vols[:, None], axis=1)) * 1e9
    ids = [f"L{i:05d}" for i in range(loans)]
    values = pl.DataFrame(
        {
            "loan_id": np.repeat(ids, len(sessions)),
            "session_date": sessions * loans,
            "value": walks.ravel(),
            "foreign_value": 0.0,
        }
    )
    ltv = values.filter(pl.col("session_date") == sessions[-1]).select(
        "loan_id",
        pl.col("session_date").alias("as_of_date"),
        currency=pl.lit("USD"),
        price=pl.lit(100.0),
        ltv=4e8 / pl.col("value"),
        warning_ltv=pl.lit(0.4),
        margin_call_ltv=pl.lit(0.5),
        liquidation_ltv=pl.lit(0.65),
    )
    cure = pl.DataFrame(
        {"loan_id": ids, "cure_period_days": [3] * loans}, schema_overrides={"cure_period_days": pl.Int32}
    )
    return ltv, values, cure


def scaling(runs: int, sizes: list[int], path_counts: list[int]) -> list[dict[str, object]]:
    """Time one day's risk for `sizes` loans at each path count; note the time per loan x 10,000 paths."""
    model = RiskModel()
    sessions = calendar.sessions_between(calendar.sessions_back(AS_OF, model.lookback_sessions), AS_OF).to_list()
    out = []
    for loans in sizes:
        ltv, values, cure = synthetic_book(loans, sessions)
        for paths in path_counts:
            sized = RiskModel(paths=paths)
            median, times = median_seconds(
                lambda m=sized, frame=ltv, v=values, c=cure: compute_loan_risk(frame, v, sessions, c, m),
                runs,  # type: ignore[misc]
            )
            unit = median / (loans * paths / 10_000)
            note = f"{unit * 1e3:.2f} ms per loan x 10k paths"
            out.append(row(f"risk, {loans} loans x {paths} paths, one day", median, times, note))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loans", type=int, nargs="+", default=[25, 100, 400])
    parser.add_argument("--paths", type=int, nargs="+", default=[10_000, 40_000])
    parser.add_argument("--skip-flow", action="store_true", help="skip the daily-run comparison (no Prefect server)")
    args = parser.parse_args()
    rows = [] if args.skip_flow else daily_runs(args.runs)
    rows += scaling(args.runs, args.loans, args.paths)
    write_results("risk", rows)


if __name__ == "__main__":
    main()
