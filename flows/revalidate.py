"""Re-validate what the warehouse already holds for a date range, on demand."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from marginwatch import calendar
from marginwatch.sources.base import RAW_BAR_SCHEMA
from transforms.quality import add_bar_checks, add_fx_checks, add_ltv_checks, previous_bars
from warehouse.connection import open_writer, run_lock
from warehouse.load import (
    RunRecord,
    read_fx_history,
    read_ltv,
    read_price_history,
    record_dq_results,
    stored_symbols,
)


@dataclass(frozen=True)
class Revalidation:
    """The results of re-validating a stored range."""

    run_id: str
    results: pl.DataFrame
    data_docs: Path | None

    @property
    def blocking_failures(self) -> pl.DataFrame:
        """Return the failed blocking checks."""
        return self.results.filter(~pl.col("success") & (pl.col("severity") == "blocking"))


def revalidate(
    warehouse: Path, start: dt.date, end: dt.date, move_bound: float, timeout: float, docs_dir: Path | None
) -> Revalidation:
    """Run every suite over the staged prices, FX rates and LTV rows in [start, end] and record the results."""
    from expectations.docs import build_data_docs
    from expectations.gate import validate
    from expectations.suites import BARS, FX_RATES, LOAN_LTV

    run = RunRecord(
        f"revalidate-{uuid.uuid4()}",
        "revalidate",
        {"start": start.isoformat(), "end": end.isoformat()},
        "warehouse",
        dt.datetime.now(dt.UTC),
        start,
        end,
    )
    with run_lock(warehouse, timeout), open_writer(warehouse, timeout) as con:
        symbols, pairs = stored_symbols(con)
        prices = read_price_history(con, symbols, start, end)
        fx = read_fx_history(con, pairs, start, end)
        ltv = read_ltv(con, start, end)
        in_range = prices.filter(pl.col("session_date") >= start)
        bars = in_range.select([pl.col(n).cast(t) for n, t in RAW_BAR_SCHEMA.items()])
        newest = calendar.session_on_or_before(end)
        checked = add_bar_checks(
            bars,
            previous_bars(prices, bars),
            calendar.sessions_between(calendar.FIRST_DAY, calendar.LAST_DAY),
            newest,
            move_bound,
        )
        fx_in_range = fx.filter(pl.col("session_date") >= start).with_columns(close=pl.col("rate"))
        outcomes = [
            validate(BARS, checked, run.run_id),
            validate(FX_RATES, add_fx_checks(fx_in_range), run.run_id),
            validate(LOAN_LTV, add_ltv_checks(ltv), run.run_id),
        ]
        results = pl.concat([o.results for o in outcomes])
        failed = results.filter(~pl.col("success") & (pl.col("severity") == "blocking"))
        if failed.height:
            run.status, run.error = "dq_failed", f"{failed.height} blocking checks failed on stored data"
        run.counts = {"prices_staged": in_range.height, "fx_staged": fx_in_range.height, "ltv_rows": ltv.height}
        record_dq_results(con, results, run)
    docs_path = build_data_docs(docs_dir or warehouse.with_name(f"{warehouse.stem}-data-docs"))
    return Revalidation(run.run_id, results, docs_path)
