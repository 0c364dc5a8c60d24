"""How much the data-quality gate adds: a day's batch and a full ARM history, beside the LTV compute.

Run: `make bench` (or `uv run python -m benchmarks.quality --runs 7`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import polars as pl

from benchmarks.common import median_seconds, row, write_results
from marginwatch import calendar
from marginwatch.book import collateral_frame, loan_frame, market_symbols
from marginwatch.config import EMBEDDED_BOOK, load_book
from marginwatch.sources.csvdir import CsvDirSource
from marginwatch.sources.synthetic import SyntheticSource
from transforms.ltv import compute_loan_ltv
from transforms.quality import add_bar_checks, add_fx_checks, add_ltv_checks
from transforms.staging import deduplicate_bars, label_raw_bars, stage_fx_rates, stage_prices

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SESSIONS = calendar.sessions_between(calendar.FIRST_DAY, calendar.LAST_DAY)
NO_HISTORY = pl.DataFrame(schema={"symbol": pl.String, "session_date": pl.Date, "close": pl.Float64})


def day_batch(as_of: dt.date) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Return what a daily run validates: the re-fetched bars, FX rows and the day's LTV rows."""
    book = load_book(EMBEDDED_BOOK)
    symbols = market_symbols(collateral_frame(book), loan_frame(book))
    raw = SyntheticSource().fetch_bars(symbols, calendar.sessions_back(as_of, 6), as_of)
    labelled = label_raw_bars(raw, "synthetic", "bench", dt.datetime.now(dt.UTC)).lazy()
    prices = stage_prices(deduplicate_bars(labelled)).collect()
    fx = stage_fx_rates(deduplicate_bars(labelled)).collect()
    ltv = compute_loan_ltv(
        loan_frame(book).lazy(),
        collateral_frame(book).lazy(),
        SESSIONS.to_frame().lazy(),
        pl.DataFrame({"as_of_date": [as_of]}).lazy(),
        prices.lazy(),
        fx.lazy(),
    ).collect()
    stocks = raw.filter(~pl.col("symbol").str.ends_with("=X"))
    fx_rows = raw.filter(pl.col("symbol").str.ends_with("=X")).with_columns(pair=pl.lit("USDJPY"), rate=pl.col("close"))
    return stocks, fx_rows, ltv


def arm_history() -> tuple[pl.DataFrame, str]:
    """Return the real ARM history when ../shared/data is here, else a synthetic one of the same span."""
    start, end = dt.date(2023, 9, 14), dt.date(2026, 4, 24)
    if SHARED.is_dir():
        folder = Path("bench-results/arm-csv")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ARM.csv").write_bytes((SHARED / "ARM_daily.csv").read_bytes())
        return CsvDirSource(folder).fetch_bars(["ARM"], start, end), "real ARM_daily.csv"
    return SyntheticSource().fetch_bars(["ARM"], start, end), "synthetic ARM (../shared/data absent)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    from expectations.gate import validate

    validate("bars", _warm(), "warm")
    setup = time.perf_counter() - started
    as_of = dt.date(2026, 3, 24)
    stocks, fx_rows, ltv = day_batch(as_of)
    history, label = arm_history()
    newest = history["session_date"].max()

    def validate_day() -> None:
        validate("bars", add_bar_checks(stocks, NO_HISTORY, SESSIONS, as_of, 0.4), "bench")
        validate("fx_rates", add_fx_checks(fx_rows), "bench")
        validate("loan_ltv_daily", add_ltv_checks(ltv), "bench")

    def validate_history() -> None:
        validate("bars", add_bar_checks(history, NO_HISTORY, SESSIONS, newest, 0.4), "bench")

    def compute_day() -> None:
        day_batch(as_of)

    day, day_times = median_seconds(validate_day, args.runs)
    full, full_times = median_seconds(validate_history, args.runs)
    base, base_times = median_seconds(compute_day, args.runs)
    write_results(
        "quality",
        [
            {
                "measure": "GX import + context + first validation",
                "median_s": setup,
                "min_s": setup,
                "max_s": setup,
                "runs": 1,
                "note": "once per process",
            },
            row("validate a day's batch (3 suites)", day, day_times, f"{day / base:.2f}x the day's fetch+stage+LTV"),
            row(f"validate full history ({history.height} bars)", full, full_times, label),
            row("day's fetch+stage+LTV, no validation", base, base_times, "baseline for the ratio"),
        ],
    )


def _warm() -> pl.DataFrame:
    bars = SyntheticSource().fetch_bars(["ARM"], dt.date(2026, 1, 2), dt.date(2026, 1, 9))
    return add_bar_checks(bars, NO_HISTORY, SESSIONS, dt.date(2026, 1, 9), 0.4)


if __name__ == "__main__":
    main()
