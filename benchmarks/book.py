"""Book scale: a whole book backfilled and run daily through the real pipeline, against the engine's own limit.

Run: `make bench-book` (or `uv run python -m benchmarks.book --loans 10000 --symbols 2000 --sessions 2520`).

Side by side in one invocation, each the median of `--runs` runs:
1. the backfill through the real pipeline (fetch, quality gate, stage, LTV, LTV gate, alert rules, load),
   in a child process of its own, with its peak memory;
2. the limit: the same LTV rows from one hand-written DuckDB statement over the same staged prices;
3. the baseline a user would otherwise write: pandas, a loop over loans, on a sample, scaled;
4. the daily increment: the next session for every loan on the full warehouse;
5. typical queries: every loan's latest status, one loan's whole history, a year's margin-call days (from the
   tables the load keeps, and the first and last again from the daily mart itself, for comparison);
6. fetching the book's symbols for one session through the yfinance adapter, replayed.
Pipeline times exclude imports (with what a process builds once: GX suites, the exchange calendar)
and the Prefect server's start, which are reported apart. It then checks that the pipeline's LTV rows
equal the limit's (same keys, values within 1e-9 relative).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine

END = dt.date(2026, 10, 29)  # the last session of every backfill
NEXT = dt.date(2026, 10, 30)  # the session the daily increment adds
TOLERANCE = 1e-9
QUERIES = {
    "latest status of every loan": """
        SELECT loan_id, as_of_date, ltv, status FROM marts.loan_ltv_latest""",
    "one loan's whole history": """
        SELECT as_of_date, collateral_value, loan_balance, ltv, status FROM marts.loan_ltv_daily
        WHERE loan_id = 'L00042' ORDER BY as_of_date""",
    "a year's margin-call days": """
        SELECT loan_id, as_of_date, ltv, cure_cash FROM marts.margin_call_days
        WHERE as_of_date BETWEEN DATE '2025-01-01' AND DATE '2025-12-31'
        ORDER BY loan_id, as_of_date""",
    # The same two answers from the daily mart itself, for comparison with the tables the load keeps.
    "latest status, from loan_ltv_daily": """
        SELECT loan_id, as_of_date, ltv, status FROM marts.loan_ltv_daily
        QUALIFY row_number() OVER (PARTITION BY loan_id ORDER BY as_of_date DESC) = 1""",
    "margin-call days, from loan_ltv_daily": """
        SELECT loan_id, as_of_date, ltv, cure_cash FROM marts.loan_ltv_daily
        WHERE status IN ('margin_call', 'liquidation') AND as_of_date BETWEEN DATE '2025-01-01' AND DATE '2025-12-31'
        ORDER BY loan_id, as_of_date""",
}
KEPT_VS_MART = {
    "latest status of every loan": "latest status, from loan_ltv_daily",
    "a year's margin-call days": "margin-call days, from loan_ltv_daily",
}


# --- the child processes -------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> None:
    """Run one flow in this process and print its timings as JSON (imports and pipeline apart)."""
    started = time.perf_counter()
    from expectations.gate import gx_context
    from flows.backfill import backfill
    from flows.daily import daily
    from marginwatch import calendar, report_chart  # noqa: F401  (matplotlib, which the daily report loads on first use)
    from marginwatch.sources import synthetic  # noqa: F401  (loaded by the run on first use)

    gx_context()  # GX builds its suites once per process: part of starting up, not of the run
    calendar.sessions_between(calendar.FIRST_DAY, calendar.LAST_DAY)  # the exchange calendar, built once per process
    imported = time.perf_counter()
    if args.child == "backfill":
        summary = backfill(args.book, args.warehouse, dt.date.fromisoformat(args.start), END, "synthetic")
    else:
        summary = daily(args.book, args.warehouse, "synthetic", dt.date.fromisoformat(args.start))
    done = time.perf_counter()
    peak_mib = _peak_mib()
    timings = {"imports_s": imported - started, "pipeline_s": done - imported, "peak_mib": peak_mib}
    source_s = _source_seconds(args) if args.child == "daily" else None
    empty_flow_s = _empty_flow_seconds() if args.child == "daily" else None
    stages = _stage_seconds(Path(args.warehouse), summary.run_id)
    figures = {"source_s": source_s, "empty_flow_s": empty_flow_s, "stages": stages, "counts": summary.counts}
    print(json.dumps(timings | figures))


def _stage_seconds(warehouse: Path, run_id: str) -> dict[str, float]:
    """Return where the run's time went, stage by stage, as its record in `meta.runs` keeps it."""
    from warehouse.connection import open_reader

    with open_reader(warehouse) as con:
        found = con.execute("SELECT stage_seconds FROM meta.runs WHERE run_id = ?", [run_id]).fetchall()
    return dict(json.loads(found[0][0])) if found and found[0][0] else {}


def _empty_flow_seconds() -> float:
    """Return what Prefect itself costs a flow run in this process: an empty flow, timed after the real one.

    Creating the run and its states through the API, and at the end joining the run's heartbeat
    thread, which sleeps a second at a time (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`): the same for a
    run of one loan or of ten thousand. For reference: the daily figures split each run itself.
    """
    from prefect import flow

    @flow(name="marginwatch-bench-empty")
    def empty() -> None:
        """Do nothing."""

    started = time.perf_counter()
    empty()
    return time.perf_counter() - started


def _source_seconds(args: argparse.Namespace) -> float:
    """Return how long the synthetic source takes to generate the bars of a daily run (part of its time).

    It draws each symbol's closes from a fixed epoch up to the range's end, and its opens, highs
    and lows for the range's years, so that any range gives the same bars; a live run waits on
    Yahoo instead.
    """
    from marginwatch import calendar
    from marginwatch.book import collateral_frame, loan_frame, market_symbols
    from marginwatch.config import load_book
    from marginwatch.sources.synthetic import SyntheticSource

    book = load_book(Path(args.book))
    source = SyntheticSource(book.settings.synthetic_seed)
    day = dt.date.fromisoformat(args.start)
    started = time.perf_counter()
    source.fetch_bars(market_symbols(collateral_frame(book), loan_frame(book)), calendar.sessions_back(day, 5), day)
    return time.perf_counter() - started


def _peak_mib() -> float:
    """Return this process's peak resident memory in MiB.

    From the kernel's high-water mark of this process's own memory (VmHWM); `ru_maxrss` would also
    count the parent's pages that a freshly spawned child briefly shares.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(flow: str, book: Path, warehouse: Path, start: dt.date, api: str) -> dict[str, Any]:
    """Run a flow in a fresh process; return its timings and its peak resident memory.

    The validated book is kept beside it (not in the user's cache): the backfill validates and
    keeps it, and each daily run reads it back, as every run after the first does.
    """
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "WARNING"}
    env["MARGINWATCH_CACHE_DIR"] = str(book.parent / "cache")
    command = [sys.executable, "-m", "benchmarks.book", "--child", flow, "--book", str(book)]
    command += ["--warehouse", str(warehouse), "--start", start.isoformat()]
    child = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if child.returncode:
        raise SystemExit(f"benchmark child {flow} failed ({child.returncode}):\n{child.stderr[-3000:]}")
    return dict(json.loads(child.stdout.strip().splitlines()[-1]))


# --- the limit and the baseline ------------------------------------------------------------------


def limit_sql(windows: list[int]) -> str:
    """Return the hand-written statement: every loan's LTV on every session, from staged prices."""
    windowed = "\nUNION ALL\n".join(
        f"""SELECT symbol, session_date, {w} AS valuation_window,
               avg(close) OVER (PARTITION BY symbol ORDER BY session_date
                                ROWS BETWEEN {w - 1} PRECEDING AND CURRENT ROW) AS price
            FROM w.staging.prices"""
        for w in windows
    )
    return f"""
    WITH sessions AS (SELECT session_date, row_number() OVER (ORDER BY session_date) AS idx FROM b_sessions),
    windowed AS ({windowed}),
    lines AS (
        SELECT c.loan_id, c.symbol, c.shares * (1 - c.haircut) AS units, l.valuation_window,
               CASE WHEN c.symbol_currency <> l.currency THEN c.symbol_currency || l.currency END AS pair
        FROM b_collateral c JOIN b_loans l USING (loan_id)),
    asked AS (SELECT lines.*, s.session_date AS as_of_date, s.idx AS as_of_idx
              FROM lines CROSS JOIN sessions s WHERE s.session_date BETWEEN $start AND $end),
    priced AS (
        SELECT a.*, p.session_date AS price_date, p.price FROM asked a ASOF JOIN windowed p
        ON a.symbol = p.symbol AND a.valuation_window = p.valuation_window AND a.as_of_date >= p.session_date),
    converted AS (
        SELECT p.*, CASE WHEN p.pair IS NULL THEN 1.0 ELSE f.rate END AS fx, f.session_date AS fx_date
        FROM priced p ASOF LEFT JOIN w.staging.fx_rates f ON p.pair = f.pair AND p.as_of_date >= f.session_date),
    valued AS (
        SELECT loan_id, as_of_date, any_value(as_of_idx) AS as_of_idx, sum(units * fx * price) AS collateral_value,
               min(price_date) AS price_date, count(*) AS priced_lines
        FROM converted WHERE fx IS NOT NULL GROUP BY loan_id, as_of_date),
    counted AS (SELECT loan_id, count(*) AS lines FROM b_collateral GROUP BY loan_id),
    balanced AS (
        SELECT v.*, l.*, l.principal * (1 + l.annual_rate * greatest(v.as_of_date - l.accrual_start, 0) / 360)
               AS loan_balance
        FROM valued v JOIN b_loans l USING (loan_id) JOIN counted c USING (loan_id)
        WHERE v.priced_lines = c.lines)
    SELECT loan_id, as_of_date, price_date, collateral_value, loan_balance,
           loan_balance / collateral_value AS ltv,
           CASE WHEN loan_balance / collateral_value >= liquidation THEN 'liquidation'
                WHEN loan_balance / collateral_value >= margin_call THEN 'margin_call'
                WHEN loan_balance / collateral_value >= warning THEN 'warning' ELSE 'ok' END AS status,
           1 - loan_balance / collateral_value / margin_call AS distance_to_margin_call,
           greatest(loan_balance - cure_target * collateral_value, 0) AS cure_cash,
           as_of_idx - (SELECT idx FROM sessions s WHERE s.session_date = balanced.price_date) AS sessions_since_price
    FROM balanced"""


def run_limit(warehouse: Path, book: Path, start: dt.date, scratch: Path) -> tuple[float, Path]:
    """Time the hand-written statement writing its rows to a table; return (seconds, database file)."""
    import duckdb

    from marginwatch import calendar
    from marginwatch.book import collateral_frame, loan_frame
    from marginwatch.config import load_book

    loaded = load_book(book)
    loans, lines = loan_frame(loaded), collateral_frame(loaded)  # noqa: F841  (read by DuckDB by name)
    target = scratch / "limit.duckdb"
    target.unlink(missing_ok=True)
    with duckdb.connect(str(target)) as con:
        con.execute(f"ATTACH '{warehouse}' AS w (READ_ONLY)")
        b_sessions = calendar.sessions_between(calendar.FIRST_DAY, END).to_frame()  # noqa: F841
        con.execute("CREATE TABLE b_loans AS SELECT * FROM loans")
        con.execute("CREATE TABLE b_collateral AS SELECT * FROM lines")
        con.execute("CREATE TABLE b_sessions AS SELECT * FROM b_sessions")
        sql = limit_sql(sorted(set(loans["valuation_window"].to_list())))
        started = time.perf_counter()
        con.execute(f"CREATE TABLE limit_ltv AS {sql}", {"start": start, "end": END})
        return time.perf_counter() - started, target


def run_pandas(warehouse: Path, book: Path, start: dt.date, sample: int) -> tuple[float, int]:
    """Time LTV the way a user would write it in pandas, one loan at a time, on the first `sample` loans."""
    import duckdb
    import pandas as pd

    from marginwatch.config import load_book

    loaded = load_book(book)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        prices = con.execute("SELECT symbol, session_date, close FROM staging.prices").df()
        fx = con.execute("SELECT pair, session_date, rate FROM staging.fx_rates").df()
    sessions = pd.DatetimeIndex(sorted(prices["session_date"].unique()))
    sessions = sessions[sessions >= pd.Timestamp(start)]
    started = time.perf_counter()
    rows = 0
    for loan in loaded.loans[:sample]:
        value = pd.Series(0.0, index=sessions)
        window = loan.valuation_window if loan.valuation == "avg_close" else 1
        for line in loan.collateral:
            close = prices[prices["symbol"] == line.symbol].set_index("session_date")["close"].sort_index()
            price = close.rolling(window, min_periods=1).mean().reindex(sessions, method="ffill")
            rate = pd.Series(1.0, index=sessions)
            if line.currency != loan.currency:
                quotes = fx[fx["pair"] == line.currency + loan.currency].set_index("session_date")["rate"]
                rate = quotes.sort_index().reindex(sessions, method="ffill")
            value = value + line.shares * (1 - line.haircut) * price * rate
        days = pd.Series((sessions - pd.Timestamp(loan.accrual_start)).days, index=sessions).clip(lower=0)
        balance = loan.principal * (1 + loan.annual_rate * days / 360)
        ltv = balance / value
        status = pd.cut(
            ltv,
            [-float("inf"), loan.levels.warning, loan.levels.margin_call, loan.levels.liquidation, float("inf")],
            labels=["ok", "warning", "margin_call", "liquidation"],
            right=False,
        )
        frame = pd.DataFrame({"loan_id": loan.id, "ltv": ltv, "status": status, "balance": balance})
        rows += len(frame)
    return time.perf_counter() - started, rows


# --- correctness and queries ---------------------------------------------------------------------


def compare_with_limit(warehouse: Path, limit_db: Path) -> dict[str, Any]:
    """Return how the pipeline's LTV rows compare with the limit's: keys, and the worst relative difference."""
    import duckdb

    with duckdb.connect(str(limit_db), read_only=True) as con:
        con.execute(f"ATTACH '{warehouse}' AS w (READ_ONLY)")
        found = con.execute(
            """
            SELECT count(*) FILTER (WHERE p.loan_id IS NULL) AS only_in_limit,
                   count(*) FILTER (WHERE q.loan_id IS NULL) AS only_in_pipeline,
                   count(*) FILTER (WHERE p.loan_id IS NOT NULL AND q.loan_id IS NOT NULL) AS both,
                   max(greatest(abs(p.ltv / q.ltv - 1), abs(p.collateral_value / q.collateral_value - 1),
                                abs(p.loan_balance / q.loan_balance - 1),
                                abs(p.cure_cash - q.cure_cash) / q.loan_balance)) AS worst_relative,
                   count(*) FILTER (WHERE p.status <> q.status OR p.price_date <> q.price_date
                                    OR p.sessions_since_price <> q.sessions_since_price) AS label_mismatches
            FROM w.marts.loan_ltv_daily p FULL JOIN limit_ltv q USING (loan_id, as_of_date)
            """
        ).fetchone()
    assert found is not None
    keys = ("only_in_limit", "only_in_pipeline", "rows", "worst_relative", "label_mismatches")
    result = dict(zip(keys, found, strict=True))
    result["equal"] = (
        result["only_in_limit"] == 0
        and result["only_in_pipeline"] == 0
        and result["label_mismatches"] == 0
        and (result["worst_relative"] or 0.0) <= TOLERANCE
    )
    return result


def time_queries(warehouse: Path, repeats: int = 15) -> dict[str, float]:
    """Return each typical query's median latency in seconds on a read-only connection, rows fetched as Arrow.

    The kept tables must answer as the daily mart does; a difference is a failed benchmark.
    """
    import duckdb

    answers: dict[str, list[Any]] = {}

    out = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for name, sql in QUERIES.items():
            answers[name] = sorted(con.execute(sql).fetchall())  # also warms the buffer pool, as a session would
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                con.sql(sql).to_arrow_table()  # as a notebook or a dashboard reads rows: columns, not tuples
                times.append(time.perf_counter() - started)
            out[name] = statistics.median(times)
    for kept, mart in KEPT_VS_MART.items():
        if answers[kept] != answers[mart]:
            raise SystemExit(f"benchmark: {kept!r} answers differently from {mart!r}")
    return out


# --- the whole benchmark -------------------------------------------------------------------------


def measure(loans: int, symbols: int, sessions: int, runs: int, pandas_sample: int, folder: Path) -> dict[str, Any]:
    """Measure one book size; return its figures."""
    from prefect.testing.utilities import prefect_test_harness

    from benchmarks.scale_book import book_toml
    from marginwatch import calendar

    start = calendar.sessions_back(END, sessions - 1)
    book = folder / "book.toml"
    book.write_text(book_toml(loans, symbols, start))
    server_started = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=180):
        from prefect.settings import PREFECT_API_URL

        api = str(PREFECT_API_URL.value())
        server_s = time.perf_counter() - server_started
        backfills, limits, dailies, pandas_times = [], [], [], []
        warehouse = folder / "backfill.duckdb"
        limit_db = folder / "limit.duckdb"
        for _ in range(runs):  # interleaved, so the machine's drift touches every arm alike
            warehouse.unlink(missing_ok=True)
            backfills.append(_run_child("backfill", book, warehouse, start, api))
            seconds, limit_db = run_limit(warehouse, book, start, folder)
            limits.append(seconds)
            pandas_times.append(run_pandas(warehouse, book, start, pandas_sample))
            increment = folder / "daily.duckdb"
            _copy_to_disk(warehouse, increment)
            dailies.append(_run_child("daily", book, increment, NEXT, api))
        check = compare_with_limit(warehouse, limit_db)
        queries = time_queries(warehouse)
    pipeline = statistics.median(b["pipeline_s"] for b in backfills)
    limit = statistics.median(limits)
    pandas_rows = pandas_times[0][1]
    bodies = [_body_seconds(d) for d in dailies]
    pandas_full = statistics.median(t for t, _ in pandas_times) * loans / min(pandas_sample, loans)
    counts = backfills[-1]["counts"]
    return {
        "loans": loans,
        "symbols": symbols,
        "sessions": sessions,
        "loan_days": counts["ltv_rows"],
        "price_rows": counts["prices_staged"],
        "alerts": counts["alerts"],
        "backfill_s": pipeline,
        "backfill_runs_s": [b["pipeline_s"] for b in backfills],
        "backfill_peak_mib": max(b["peak_mib"] or 0 for b in backfills),
        "limit_s": limit,
        "limit_runs_s": limits,
        "backfill_over_limit": pipeline / limit,
        # Each run's backfill over the limit timed right after it: the pair shares the machine's speed of the moment.
        "backfill_over_limit_paired": statistics.median(
            b["pipeline_s"] / seconds for b, seconds in zip(backfills, limits, strict=True)
        ),
        "pandas_sample_loans": min(pandas_sample, loans),
        "pandas_sample_rows": pandas_rows,
        "pandas_scaled_s": pandas_full,
        "pandas_over_backfill": pandas_full / pipeline,
        "daily_s": statistics.median(d["pipeline_s"] for d in dailies),
        "daily_runs_s": [d["pipeline_s"] for d in dailies],
        "daily_peak_mib": max(d["peak_mib"] or 0 for d in dailies),
        "daily_source_s": statistics.median(d["source_s"] for d in dailies),
        # Each run split in two by its own record: the flow's body, and around it Prefect starting and
        # finishing the run (whose heartbeat join ends on a whole second).
        "daily_prefect_s": statistics.median(d["pipeline_s"] - body for d, body in zip(dailies, bodies, strict=True)),
        "daily_empty_flow_s": statistics.median(d["empty_flow_s"] for d in dailies),
        # The body less the synthetic source, which a live run spends waiting on Yahoo instead.
        "daily_own_s": statistics.median(body - d["source_s"] for d, body in zip(dailies, bodies, strict=True)),
        "backfill_stages_s": _median_stages(backfills),
        "daily_stages_s": _median_stages(dailies),
        "imports_s": statistics.median(b["imports_s"] for b in backfills + dailies),
        "server_start_s": server_s,
        "queries_s": queries,
        "correctness": check,
    }


def _copy_to_disk(source: Path, target: Path) -> None:
    """Copy a warehouse and wait for the copy to reach the disk.

    Otherwise the daily run's checkpoint, which syncs the file, writes out the whole copy (2 GB at 25.2M
    loan-days: its `load` stage 1.7 to 2.0 s against 0.6 to 1.0 s), a cost of the benchmark's set-up that a
    warehouse the daily run finds in place never has.
    """
    shutil.copy(source, target)
    with target.open("rb+") as handle:
        os.fsync(handle.fileno())


def _body_seconds(run: dict[str, Any]) -> float:
    """Return a run's flow body in seconds, every stage together, as its record in `meta.runs` keeps it."""
    if "total" not in run["stages"]:
        raise SystemExit("benchmark: the daily run's record in meta.runs has no stage times")
    return float(run["stages"]["total"])


def _median_stages(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Return each stage's median seconds over the runs (as recorded in `meta.runs`), longest first."""
    names = {name for run in runs for name in run["stages"]}
    medians = {name: statistics.median(run["stages"].get(name, 0.0) for run in runs) for name in names}
    return dict(sorted(medians.items(), key=lambda item: -item[1]))


def _by_stage(stages: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in stages.items() if name != "total")


def print_table(found: dict[str, Any]) -> None:
    """Print one size's figures."""
    print(
        f"\n{found['loans']:,} loans, {found['symbols']:,} symbols, {found['sessions']:,} sessions "
        f"({found['loan_days']:,} loan-days, {found['price_rows']:,} price rows, {found['alerts']:,} alerts)"
    )
    lines = [
        ("backfill, real pipeline", f"{found['backfill_s']:.2f} s", f"peak {found['backfill_peak_mib']:.0f} MiB"),
        ("  by stage (s)", "", _by_stage(found["backfill_stages_s"])),
        (
            "limit: one DuckDB statement",
            f"{found['limit_s']:.2f} s",
            f"pipeline / limit = {found['backfill_over_limit']:.2f}x (run by run, median "
            f"{found['backfill_over_limit_paired']:.2f}x)",
        ),
        (
            "pandas loop over loans (scaled)",
            f"{found['pandas_scaled_s']:.1f} s",
            f"{found['pandas_sample_loans']} loans timed; pandas / pipeline = {found['pandas_over_backfill']:.1f}x",
        ),
        ("daily increment, every loan", f"{found['daily_s']:.2f} s", f"peak {found['daily_peak_mib']:.0f} MiB"),
        ("  of which the synthetic source", f"{found['daily_source_s']:.2f} s", "generating the bars"),
        (
            "  of which Prefect's own cost",
            f"{found['daily_prefect_s']:.2f} s",
            f"starting and finishing the run; an empty flow run takes {found['daily_empty_flow_s']:.2f} s",
        ),
        ("  the pipeline's own work", f"{found['daily_own_s']:.2f} s", "the flow's body less the source (median)"),
        ("  by stage (s)", "", _by_stage(found["daily_stages_s"])),
        ("imports (per process)", f"{found['imports_s']:.2f} s", "not in the figures above"),
        ("Prefect server start", f"{found['server_start_s']:.2f} s", "not in the figures above"),
        *[(f"query: {name}", f"{seconds * 1000:.1f} ms", "") for name, seconds in found["queries_s"].items()],
    ]
    check = found["correctness"]
    verdict = "equal" if check["equal"] else "DIFFERENT"
    lines.append(
        (
            "pipeline rows vs limit rows",
            verdict,
            f"{check['rows']:,} rows; worst relative {check['worst_relative']:.1e}",
        )
    )
    width = max(len(a) for a, _, _ in lines)
    for name, figure, note in lines:
        print(f"  {name:<{width}}  {figure:>12}  {note}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark at the sizes given; write bench-results/book.json."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry from the test server
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, nargs="+", default=[10_000])
    parser.add_argument("--symbols", type=int, nargs="+", default=[2_000])
    parser.add_argument("--sessions", type=int, nargs="+", default=[2_520])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pandas-sample", type=int, default=100, help="loans the pandas baseline times")
    parser.add_argument("--out", type=Path, default=RESULTS / "book.json")
    parser.add_argument("--fetch-latency-ms", type=float, default=50, help="replayed latency of each Yahoo request")
    parser.add_argument("--child", choices=["backfill", "daily"], help=argparse.SUPPRESS)
    parser.add_argument("--book", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    parser.add_argument("--start", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    sizes = list(
        zip(
            *(
                _spread(v, len(max(args.loans, args.symbols, args.sessions, key=len)))
                for v in (args.loans, args.symbols, args.sessions)
            ),
            strict=True,
        )
    )
    results = []
    for loans, symbols, sessions in sizes:
        with tempfile.TemporaryDirectory(prefix="marginwatch-bench-") as tmp:
            found = measure(loans, symbols, sessions, args.runs, args.pandas_sample, Path(tmp))
        print_table(found)
        results.append(found)
        _write(args.out, {"machine": machine(), "sizes": results})  # each size as soon as it is measured
    fetching = fetch_book(max(args.symbols), args.runs, args.fetch_latency_ms)
    _write(args.out, {"machine": machine(), "sizes": results, "fetch": fetching})
    print(f"\nresults in {args.out}")
    return 0 if all(r["correctness"]["equal"] for r in results) else 1


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def fetch_book(symbols: int, runs: int, latency_ms: float) -> list[dict[str, Any]]:
    """Fetch the book's symbols for one session through the yfinance adapter, replayed; print and return the rows."""
    from benchmarks.fetch import compare

    rows = compare(symbols, min(200, symbols), runs, latency_ms / 1000, 0.02, 8)
    print(f"\nfetching {symbols:,} symbols for one session, replayed ({latency_ms:g} ms a request, 2% HTTP 429)")
    for found in rows:
        print(f"  {found['measure']:<60}  {found['median_s']:8.2f} s  {found['note']}")
    return rows


def _spread(values: list[int], n: int) -> list[int]:
    """Repeat a single value to `n` sizes; several values must number `n`."""
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise SystemExit(f"give one value or {n} values for each of --loans, --symbols and --sessions")
    return values


if __name__ == "__main__":
    raise SystemExit(main())
