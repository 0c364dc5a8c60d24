"""The body both flows share: plan, fetch, check, stage, compute and publish under the run lock."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl
from prefect.runtime import flow_run

from expectations.gate import merge_results
from flows import alerting, tasks
from flows.plan import RunPlan
from flows.runners import partitions_at_once
from flows.sources import make_source
from flows.stages import stage, stage_seconds, timed
from flows.tasks import as_is
from marginwatch import calendar
from marginwatch.book import BookFrames, market_symbols
from marginwatch.book_cache import read_book
from marginwatch.config import Book, RiskSettings, Settings, check_channel_urls
from marginwatch.errors import DataQualityError, MarginwatchError, UsageError, WarehouseError
from marginwatch.faults import crash_point
from marginwatch.notify import Delivery
from marginwatch.sources.base import MarketSource
from transforms.alerts import open_episodes
from transforms.ltv import LTV_SCHEMA, VALUED_PRICE_COLUMNS, adjust_shares_for_splits
from transforms.risk import RiskModel
from transforms.staging import earliest_revision, fx_pair_expr, label_raw_bars
from warehouse.backup import take_backup
from warehouse.connection import open_writer, run_lock
from warehouse.load import (
    RunOutput,
    RunRecord,
    kept_rows,
    last_as_of_dates,
    record_report,
    record_run_outcome,
    record_stages,
)

log = logging.getLogger("marginwatch")
POLL_SECONDS = 60.0  # between asks for a bar the source does not have yet
SPILL_LOAN_DAYS = 2_000_000  # a run with more loan-days keeps its LTV rows on disk until they are published
# Parquet row groups of whole DuckDB row groups (122,880 rows): the publishing insert then fills the
# warehouse's row groups, leaving none part-full for later checkpoints to merge (seconds on the next run).
SPILL_ROW_GROUP = 8 * 122_880
SET_ASIDE_THREAD = "marginwatch-set-aside"  # the thread a large run's Parquet is written on

Planner = Callable[[dict[str, dt.date]], RunPlan]


@dataclass(frozen=True)
class RunSummary:
    """What a finished run computed, for the caller to show."""

    run_id: str
    flow: str
    source: str
    as_of_start: dt.date
    as_of_end: dt.date
    counts: dict[str, int]
    ltv: pl.DataFrame = field(repr=False)
    dq_results: pl.DataFrame = field(repr=False)
    data_docs: Path | None = None
    held_back: dict[str, list[str]] = field(default_factory=dict)
    alerts: pl.DataFrame | None = field(default=None, repr=False)
    deliveries: list[Delivery] = field(default_factory=list)
    deliver_from: dt.date = dt.date.min  # older alerts are recorded, not sent or announced
    report: Path | None = None  # the HTML report the daily flow wrote
    risk: pl.DataFrame | None = field(default=None, repr=False)  # None when risk is turned off

    @property
    def undelivered(self) -> list[Delivery]:
        """Return the deliveries a channel did not acknowledge."""
        return [d for d in self.deliveries if d.error is not None]


def as_book(book: Book | str) -> BookFrames:
    """Return the book's frames, from the book itself or from its TOML file's path."""
    return read_book(Path(book)) if isinstance(book, str) else BookFrames.of(book)


def risk_model(settings: RiskSettings) -> RiskModel:
    """Return the risk estimator the settings describe."""
    return RiskModel(
        decay=settings.ewma_lambda,
        ewma_sessions=settings.ewma_sessions,
        pool_sessions=settings.bootstrap_sessions,
        paths=settings.paths,
        seed=settings.seed,
    )


def risk_history_sessions(book: BookFrames) -> int:
    """Return the sessions of history before an as-of date that its risk figures need (0 without risk)."""
    return risk_model(book.settings.risk).lookback_sessions if book.settings.risk.enabled else 0


def _pair(symbol: str) -> str:
    base, counter = fx_pair_expr(pl.lit(symbol))
    return str(pl.select(base + counter).item())


def _held_back_loans(collateral: pl.DataFrame, loans: pl.DataFrame, symbols: list[str], pairs: list[str]) -> list[str]:
    """Return the loans that depend on a held-back symbol or FX pair."""
    lines = collateral.join(loans.select("loan_id", "currency"), on="loan_id").with_columns(
        pair=pl.col("symbol_currency") + pl.col("currency")
    )
    hit = lines.filter(pl.col("symbol").is_in(symbols) | (pl.col("pair").is_in(pairs)))
    return sorted(hit["loan_id"].unique().to_list())


def execute(
    flow_name: str,
    book: BookFrames,
    warehouse: Path,
    source_spec: str | None,
    planner: Planner,
    parameters: dict[str, Any],
    now: dt.datetime,
    wait_for_bars_seconds: float = 0.0,
) -> RunSummary:
    """Run the pipeline for the sessions `planner` chooses, publish it in one transaction, then alert.

    With `wait_for_bars_seconds`, a source that has no bar yet for the last session is asked
    again until then; past it the run goes on with the last bars (and a stale-source alert).
    """
    settings = book.settings
    check_channel_urls(book.channels)  # a channel without its URL is a config error before any work
    run_id = str(flow_run.get_id() or uuid.uuid4())
    record = RunRecord(run_id, flow_name, parameters, source_spec or settings.source, dt.datetime.now(dt.UTC))
    timeout = settings.lock_timeout_seconds
    with run_lock(warehouse, timeout):
        existed = warehouse.exists()
        try:
            summary = _pipeline(book, warehouse, source_spec, planner, record, now, wait_for_bars_seconds)
        except Exception as exc:
            if existed:
                _record_failure(warehouse, timeout, record, exc)
            if not isinstance(exc, UsageError):  # a mistyped date is the caller's to fix, not the desk's
                alerting.notify_failure(book, warehouse if existed else None, timeout, record, _one_line(exc))
            raise
        crash_point("run:committed")
        report = None
        if flow_name == "daily":
            with stage("report"):
                report = _write_report(warehouse, settings, summary.as_of_end, record.run_id)
        crash_point("run:reported")
        with stage("deliver"):
            deliveries = alerting.deliver_alerts(warehouse, timeout, as_is(book), report)
        crash_point("run:delivered")
        if settings.backups_kept and flow_name == "daily":
            with stage("backup"):
                take_backup(warehouse, settings.backups_kept, dt.datetime.now(dt.UTC), timeout=timeout)
            crash_point("backup:taken")
        summary = replace(summary, deliveries=deliveries, report=report)
        if summary.alerts is not None:
            with stage("announce"):
                recent = summary.alerts.filter(pl.col("as_of_date") >= summary.deliver_from)
                alerting.announce(recent, summary.ltv, summary.as_of_end)
        _record_stages(warehouse, timeout, record)
    if summary.held_back:
        message = _gate_message(summary)
        _run_logger().error("data-quality alert: %s", message)  # shown in Prefect's UI for the run
        raise DataQualityError(message, summary)
    return summary


def _pipeline(
    book: BookFrames,
    warehouse: Path,
    source_spec: str | None,
    planner: Planner,
    record: RunRecord,
    now: dt.datetime,
    wait_for_bars_seconds: float,
) -> RunSummary:
    settings = book.settings
    timeout = settings.lock_timeout_seconds
    source = make_source(source_spec or settings.source, settings.synthetic_seed)
    with stage("plan"):
        loans, collateral = book.loans, book.collateral
        loan_ids = loans["loan_id"].to_list()
        plan = planner(_last_computed(warehouse, timeout, loan_ids) if warehouse.exists() else {})
    record.as_of_start, record.as_of_end = plan.as_of_start, plan.as_of_end
    crash_point("run:planned")
    symbols = market_symbols(collateral, loans)
    stocks = [s for s in symbols if not s.endswith("=X")]
    pairs = [_pair(s) for s in symbols if s.endswith("=X")]
    with stage("read"):
        split_state = tasks.read_split_state(warehouse, timeout, stocks)
    with stage("fetch"):
        fetched = _restate_new_splits(
            source, _fetch_waiting(source, symbols, plan, wait_for_bars_seconds), split_state, plan
        )
    crash_point("run:fetched")
    splits = pl.concat(
        [
            split_state.select("symbol", "session_date", "stock_splits"),
            fetched.select("symbol", "session_date", "stock_splits"),
        ]
    )
    raw = label_raw_bars(fetched, source.name, record.run_id, dt.datetime.now(dt.UTC))
    del fetched  # a whole book's bars: keep one copy, the labelled one
    with stage("read"):
        history = tasks.read_history(warehouse, timeout, stocks, pairs, plan.fetch_start, plan.fetch_end)
    with stage("gate"):
        verdict, staged = tasks.gate_and_stage(raw, history, plan.as_of_end, settings.max_close_move, record.run_id)
    crash_point("run:staged")
    plan = _widen_for_revisions(plan, history, staged)
    record.as_of_start = plan.as_of_start
    held = _held_back_loans(collateral, loans, verdict.blocked_symbols, verdict.blocked_pairs)
    ready = loans.filter(~pl.col("loan_id").is_in(held))
    pledged = adjust_shares_for_splits(collateral, splits)
    with stage("read"):
        prior = alerting.read_alert_state(warehouse, timeout, as_is(ready["loan_id"].to_list()), plan.as_of_start)
    deliver_from = calendar.sessions_back(calendar.latest_completed_session(now), settings.alert_lookback_sessions)
    _remove_stale_spills(warehouse)
    bars_fetched = raw.height
    with tempfile.TemporaryDirectory(dir=warehouse.parent, prefix=_spill_prefix(warehouse)) as spill:
        large = _spills(ready, plan)
        kept_raw: pl.DataFrame | list[Path] = raw
        kept_prices: pl.DataFrame | list[Path] = staged[0]
        if large:  # a large run's bars and staged prices wait on disk for the publishing transaction
            with stage("set_aside"):
                kept_raw = [_set_aside(raw, Path(spill) / "raw.parquet")]
                del raw  # a whole book's bars: not held through the partitions
                kept_prices = [_set_aside(staged[0], Path(spill) / "prices.parquet")]
            history, staged = _valued_only(history), _valued_only(staged)  # valuing needs 5 of 14 price columns
        markets = (stocks, pairs)
        lending, bars = (ready, pledged), (history, staged)
        found = _assess(book, warehouse, markets, lending, bars, plan, record, prior, deliver_from, Path(spill))
        crash_point("run:risk")
        held_back = {
            "symbols": verdict.blocked_symbols,
            "pairs": verdict.blocked_pairs,
            "loans": sorted({*held, *found.bad_loans}),
        }
        with stage("alert_rules"):
            notices, notice_outbox = alerting.raise_alerts(
                as_is(book),
                pl.DataFrame(schema=found.latest.schema),
                prior,
                plan.as_of_end,
                dict.fromkeys(held_back["loans"], _held_text(held_back)),
                deliver_from,
            )
        alerts = pl.concat([*found.alerts, notices])  # a large run's recent ones: the rest wait on disk
        if found.spilled:
            found.alert_files.append(_set_aside(notices, Path(spill) / "alerts-notices.parquet"))
        crash_point("run:alerts")
        output = RunOutput(
            kept_raw,
            kept_prices,
            staged[1],
            found.files if found.spilled else pl.concat(found.ltv),
            found.published,
            verdict.quarantined,
            pl.concat([verdict.results, merge_results(found.results)]),
            found.alert_files if found.spilled else alerts,
            pl.concat([*found.outbox, notice_outbox]),
            _concat_or_none(found.stress),
            _concat_or_none(found.risk),
            ltv_newest=found.newest_files if found.spilled else None,
            ltv_breaches=found.breach_files if found.spilled else None,
            episodes=_concat_or_none(found.episodes),
        )
        record.counts = {
            "bars_fetched": bars_fetched,
            "prices_staged": staged[0].height,
            "fx_staged": staged[1].height,
            "ltv_rows": found.rows,
            "bars_quarantined": verdict.quarantined.height,
            "alerts": found.alert_count + notices.height,
        }
        if held_back["loans"] or held_back["symbols"] or held_back["pairs"]:
            record.status, record.error = "dq_failed", _held_text(held_back)
        record.stages = stage_seconds()  # so far; the stages after the load are added once they are done
        with stage("load"):
            tasks.load_warehouse(warehouse, timeout, as_is(output), record)
    with stage("data_docs"):
        docs = _data_docs(warehouse, settings.data_docs_dir)
    return RunSummary(
        record.run_id,
        record.flow,
        source.name,
        plan.as_of_start,
        plan.as_of_end,
        record.counts,
        found.latest if found.spilled else pl.concat(found.ltv),
        output.dq_results,
        docs,
        held_back if record.status == "dq_failed" else {},
        alerts,
        deliver_from=deliver_from,
        risk=output.risk,
    )


@dataclass
class _Assessment:
    """What the partitions of a run's loans yield, gathered partition by partition."""

    ltv: list[pl.DataFrame] = field(default_factory=list)  # accepted rows of a small run, partition by partition
    files: list[Path] = field(default_factory=list)  # those of a large run, set aside in Parquet
    latest: pl.DataFrame = field(default_factory=pl.DataFrame)  # accepted rows of the last as-of date
    results: list[pl.DataFrame] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    bad_loans: list[str] = field(default_factory=list)
    alerts: list[pl.DataFrame] = field(default_factory=list)  # a large run keeps only those recent enough to send
    alert_files: list[Path] = field(default_factory=list)  # every alert of a large run, set aside in Parquet
    newest_files: list[Path] = field(default_factory=list)  # each loan's newest LTV row of a large run, set aside
    breach_files: list[Path] = field(default_factory=list)  # its LTV rows at margin call or liquidation, set aside
    alert_count: int = 0
    episodes: list[pl.DataFrame] = field(default_factory=list)  # where each loan's open breach began
    outbox: list[pl.DataFrame] = field(default_factory=list)
    stress: list[pl.DataFrame] = field(default_factory=list)
    risk: list[pl.DataFrame] = field(default_factory=list)
    rows: int = 0
    spilled: bool = False


def _assess(
    book: BookFrames,
    warehouse: Path,
    markets: tuple[list[str], list[str]],
    lending: tuple[pl.DataFrame, pl.DataFrame],
    bars: tuple[tuple[pl.DataFrame, pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]],
    plan: RunPlan,
    record: RunRecord,
    prior: pl.DataFrame,
    deliver_from: dt.date,
    spill: Path,
) -> _Assessment:
    """Compute, check, assess and alert the loans partition by partition, keeping memory bounded.

    A large run (a backfill of a whole book) writes each partition's accepted LTV rows to Parquet
    in `spill`, which the publishing transaction reads; a small one keeps them in memory.
    """
    settings = book.settings
    loans, pledged = lending
    history, staged = bars
    # A partition's risk figures look back over its loans' history, so that history counts in its size.
    sessions = len(calendar.sessions_between(plan.as_of_start, plan.as_of_end)) + risk_history_sessions(book)
    size = tasks.partition_size(sessions, settings.ltv_partition_loans)
    found = _Assessment(spilled=_spills(loans, plan))
    with stage("read"):
        risk_history = _risk_history(book, warehouse, markets, plan)
    run_id = pl.lit(record.run_id)
    latest = []
    at_once = partitions_at_once(settings)
    partitions = tasks.compute_ltv(loans, pledged, history, staged, plan, settings.stale_after_sessions, size, at_once)
    # A large run's rows are written to Parquet on a thread of their own while the next partition is
    # checked (Polars writes without the interpreter lock; GX's checks hold it), one partition behind.
    writing: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=SET_ASIDE_THREAD) as writer, closing(partitions):
        for index, (loan_ids, computed) in enumerate(timed("compute", partitions)):
            with stage("ltv_check"):
                validated = tasks.validate_ltv(computed.with_columns(run_id=run_id), record.run_id)
            tasks.release(computed, validated)
            ltv, results, bad = validated
            part = loans.filter(pl.col("loan_id").is_in(loan_ids))
            found.results.append(results)
            found.bad_loans += bad
            found.published += [loan for loan in loan_ids if loan not in bad]
            found.rows += ltv.height
            latest.append(ltv.filter(pl.col("as_of_date") == plan.as_of_end))
            if risk_history is not None and ltv.height:
                with stage("risk"):
                    stress, risk = _assess_risk(book, risk_history, staged, part, pledged, ltv)
                found.stress.append(stress)
                found.risk.append(risk)
            with stage("alert_rules"):
                raised = alerting.raise_alerts(as_is(book), ltv, prior, plan.as_of_end, {}, deliver_from)
                found.episodes.append(open_episodes(raised[0]))  # the breach starts the load keeps
            tasks.release(raised)
            alerts, outbox = raised
            found.alert_count += alerts.height
            found.outbox.append(outbox)
            if found.spilled:
                files = [spill / f"{kind}-{index:05d}.parquet" for kind in ("ltv", "alerts", "newest", "breaches")]
                if writing is not None:
                    with stage("set_aside"):
                        writing.result()  # at most one partition waits to be written: memory stays bounded
                writing = writer.submit(_set_aside_partition, ltv, alerts, files)
                found.files.append(files[0])
                found.alert_files.append(files[1])
                found.newest_files.append(files[2])
                found.breach_files.append(files[3])
                found.alerts.append(alerts.filter(pl.col("as_of_date") >= deliver_from))
            else:
                found.ltv.append(ltv)
                found.alerts.append(alerts)
            # Before the next partition's check: held, these would overlap it and the one computing.
            del computed, validated, ltv, results, part, raised, alerts, outbox
        if writing is not None:
            with stage("set_aside"):
                writing.result()  # a write the disk refused is this run's WarehouseError
    crash_point("run:computed")
    found.latest = pl.concat(latest) if latest else pl.DataFrame(schema=LTV_SCHEMA | {"run_id": pl.String()})
    return found


def _valued_only(bars: tuple[pl.DataFrame, pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return staged prices with only the columns that value collateral (and FX rates as they are)."""
    return bars[0].select(VALUED_PRICE_COLUMNS), bars[1]


def _spills(loans: pl.DataFrame, plan: RunPlan) -> bool:
    """Return whether a run is large enough to keep its rows on disk until they are published."""
    sessions = len(calendar.sessions_between(plan.as_of_start, plan.as_of_end))
    return loans.height * sessions > SPILL_LOAN_DAYS


def _set_aside(rows: pl.DataFrame, path: Path) -> Path:
    """Write rows to Parquet for the publishing transaction; WarehouseError if the disk refuses."""
    try:
        rows.write_parquet(path, compression="lz4", statistics=False, row_group_size=SPILL_ROW_GROUP)
    except OSError as exc:  # a full or read-only disk: nothing is published, the warehouse is untouched
        raise WarehouseError(f"{path.parent}: cannot set rows aside before publishing: {exc}") from None
    return path


def _set_aside_partition(ltv: pl.DataFrame, alerts: pl.DataFrame, files: list[Path]) -> None:
    """Write a partition's LTV rows, its alerts, and the LTV rows each kept table takes (files in that order).

    Each loan is in one partition, so a partition's newest row of a loan is the run's.
    """
    for rows, path in zip((ltv, alerts, *kept_rows(ltv)), files, strict=True):
        _set_aside(rows, path)


def _concat_or_none(frames: list[pl.DataFrame]) -> pl.DataFrame | None:
    return pl.concat(frames) if frames else None


def _spill_prefix(warehouse: Path) -> str:
    return f".{warehouse.name}.spill-"


def _remove_stale_spills(warehouse: Path) -> None:
    """Remove spill folders a killed run left behind (the run lock is held: no run is using one)."""
    for stale in warehouse.parent.glob(f"{_spill_prefix(warehouse)}*"):
        shutil.rmtree(stale, ignore_errors=True)


def _risk_history(
    book: BookFrames, warehouse: Path, markets: tuple[list[str], list[str]], plan: RunPlan
) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """Return the staged history the run's risk figures look back on, or None with risk turned off."""
    settings = book.settings
    if not settings.risk.enabled:
        return None
    since = calendar.sessions_back(plan.as_of_start, risk_model(settings.risk).lookback_sessions)
    return tasks.read_history(warehouse, settings.lock_timeout_seconds, *markets, since, plan.as_of_end)


def _assess_risk(
    book: BookFrames,
    history: tuple[pl.DataFrame, pl.DataFrame],
    staged: tuple[pl.DataFrame, pl.DataFrame],
    loans: pl.DataFrame,
    pledged: pl.DataFrame,
    ltv: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the stress and risk rows of a partition's published LTV rows."""
    settings = book.settings
    assessed = tasks.compute_risk(
        loans,
        pledged.filter(pl.col("loan_id").is_in(loans["loan_id"].implode())),
        history,
        staged,
        ltv,
        risk_model(settings.risk),
        list(settings.risk.price_shocks),
        list(settings.risk.fx_shocks),
    )
    tasks.release(assessed)
    stress, risk = assessed
    run_id = pl.lit(ltv["run_id"][0])
    return stress.with_columns(run_id=run_id), risk.with_columns(run_id=run_id)


def _fetch_waiting(source: MarketSource, symbols: list[str], plan: RunPlan, wait_seconds: float) -> pl.DataFrame:
    """Fetch every symbol; while a stock has no bar for the last session yet, ask again until the wait ends."""
    deadline = time.monotonic() + wait_seconds
    bars = tasks.fetch_bars(source, symbols, plan.fetch_start, plan.fetch_end)
    while True:
        newest = bars.group_by("symbol").agg(pl.col("session_date").max())
        fresh = _fresh(newest, plan.as_of_end)
        late = [s for s in symbols if not s.endswith("=X") and s not in fresh]
        remaining = deadline - time.monotonic()
        if not late or remaining <= 0:
            return bars
        _run_logger().info("no %s bar yet for %s; asking again", ", ".join(late), plan.as_of_end)
        time.sleep(min(POLL_SECONDS, remaining))
        again = tasks.fetch_bars(source, late, plan.fetch_start, plan.fetch_end)
        bars = pl.concat([bars.filter(~pl.col("symbol").is_in(late)), again])


def _restate_new_splits(
    source: MarketSource, fetched: pl.DataFrame, split_state: pl.DataFrame, plan: RunPlan
) -> pl.DataFrame:
    """Refetch the whole staged history of a symbol whose batch shows a split not staged before.

    The source restates prices in the new split basis; staging must not mix the two bases.
    """
    known = split_state.filter(pl.col("stock_splits") > 0).select("symbol", "session_date")
    new = (
        fetched.filter((pl.col("stock_splits") > 0) & ~pl.col("symbol").str.ends_with("=X"))
        .select("symbol", "session_date")
        .join(known, on=["symbol", "session_date"], how="anti")
    )
    firsts = (
        split_state.group_by("symbol")
        .agg(pl.col("first_staged").min())
        .join(new.select("symbol").unique(), on="symbol")
    )
    restate = firsts.filter(pl.col("first_staged") < plan.fetch_start)
    if not restate.height:
        return fetched
    symbols = restate["symbol"].to_list()
    _run_logger().warning("new split for %s: restating staged history from the source", ", ".join(symbols))
    since: dt.date = restate["first_staged"].min()  # type: ignore[assignment]
    again = tasks.fetch_bars(source, symbols, since, plan.fetch_end)
    return pl.concat([fetched.filter(~pl.col("symbol").is_in(symbols)), again])


def _fresh(newest: pl.DataFrame, session: dt.date) -> set[str]:
    return set(newest.filter(pl.col("session_date") >= session)["symbol"].to_list())


def _one_line(exc: Exception) -> str:
    message = str(exc) if isinstance(exc, MarginwatchError) else f"{type(exc).__name__}: {exc}"
    return message.strip().splitlines()[0] if message.strip() else type(exc).__name__


def _widen_for_revisions(
    plan: RunPlan, history: tuple[pl.DataFrame, pl.DataFrame], staged: tuple[pl.DataFrame, pl.DataFrame]
) -> RunPlan:
    """Recompute from the earliest staged bar the source revised (or a move since confirmed)."""
    revised = [
        earliest_revision(history[0], staged[0], ["symbol", "session_date"], ["close", "is_unconfirmed"]),
        earliest_revision(history[1], staged[1], ["pair", "session_date"], ["rate"]),
    ]
    earliest = min((day for day in revised if day is not None), default=None)
    if earliest is None or earliest >= plan.as_of_start:
        return plan
    sessions = calendar.sessions_between(earliest, plan.as_of_start)
    return replace(plan, as_of_start=sessions[0])


def _run_logger() -> logging.Logger | logging.LoggerAdapter:  # type: ignore[type-arg]
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return log


def _held_text(held: dict[str, list[str]]) -> str:
    parts = [f"{kind} {', '.join(names)}" for kind, names in held.items() if names]
    return "data-quality gate held back " + "; ".join(parts)


def _gate_message(summary: RunSummary) -> str:
    failed = summary.dq_results.filter(~pl.col("success") & (pl.col("severity") == "blocking"))
    checks = ", ".join(
        f"{r['suite']}.{r['check_name']} ({r['unexpected_count']} rows)" for r in failed.iter_rows(named=True)
    )
    return f"{_held_text(summary.held_back)}: failed {checks}; failing rows are in raw.quarantined_bars"


def _data_docs(warehouse: Path, configured: Path | None) -> Path | None:
    from expectations.docs import build_data_docs

    directory = configured or warehouse.with_name(f"{warehouse.stem}-data-docs")
    try:
        return build_data_docs(directory)
    except Exception as exc:  # the published run stands; docs are a rendering of stored results
        log.warning("could not build Data Docs in %s: %s", directory, exc)
        return None


def _write_report(warehouse: Path, settings: Settings, as_of: dt.date, run_id: str) -> Path | None:
    """Write the day's report, note it on the run's record and link it as a Prefect artifact; None on failure."""
    from prefect.artifacts import create_link_artifact

    from marginwatch.report import write_report

    out = settings.reports_dir / f"report-{as_of}.html" if settings.reports_dir else None
    try:
        files = write_report(warehouse, as_of, out, settings.lock_timeout_seconds)
        with open_writer(warehouse, settings.lock_timeout_seconds) as con:
            record_report(con, run_id, str(files.html))
    except Exception as exc:  # the published run stands; the report is a rendering of it
        _run_logger().warning("could not write the report for %s: %s", as_of, _one_line(exc))
        return None
    try:
        create_link_artifact(
            key="marginwatch-report",
            link=files.html.resolve().as_uri(),
            link_text=f"marginwatch report {as_of}",
            description=f"LTV, stress, probabilities, alerts and data quality on {as_of}; chart {files.png.name}",
        )
    except Exception as exc:  # outside a flow run (or with no API) there is nothing to attach it to
        log.debug("no report artifact: %s", exc)
    return files.html


def _last_computed(warehouse: Path, timeout: float, loan_ids: list[str]) -> dict[str, dt.date]:
    with open_writer(warehouse, timeout) as con:
        return last_as_of_dates(con, loan_ids)


def _record_stages(warehouse: Path, timeout: float, record: RunRecord) -> None:
    """Complete the run's record with every stage's time, now that the last is done."""
    record.stages = stage_seconds()
    try:
        with open_writer(warehouse, timeout) as con:
            record_stages(con, record.run_id, record.stages)
    except Exception as exc:  # the published run stands; the timings are a note on it
        log.warning("could not record the stage times of run %s: %s", record.run_id, exc)


def _record_failure(warehouse: Path, timeout: float, record: RunRecord, exc: Exception) -> None:
    record.stages = stage_seconds()  # how far it got, and where the time went until then
    try:
        with open_writer(warehouse, timeout) as con:
            record_run_outcome(con, record, "failed", _one_line(exc))
    except Exception as inner:  # the original failure matters more than its record
        log.warning("could not record the failed run %s: %s", record.run_id, inner)
