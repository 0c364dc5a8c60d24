"""The `marginwatch` command line: run, backfill, status and sql."""

from __future__ import annotations

import datetime as dt
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from marginwatch.config import Environment, check_channel_urls, resolve_environment, set_prefect_defaults
from marginwatch.errors import DataQualityError, DeliveryPending, InputError, MarginwatchError
from marginwatch.output import Format, render

if TYPE_CHECKING:
    from flows.run import RunSummary
    from marginwatch.book import BookFrames

app = typer.Typer(
    name="marginwatch",
    help="Daily loan-to-value of margin loans secured by pledged shares.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
SHOWN_ALERTS = 50  # alerts a run lists in the terminal; a backfill of a whole book raises millions
if not out.is_terminal:
    out = Console(soft_wrap=True, width=200)  # piped output: no wrapping at 80 columns
err = Console(stderr=True, soft_wrap=True)


class _State:
    env: Environment
    debug: bool = False


state = _State()
DateOption = Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="A date, YYYY-MM-DD.")]
SourceOption = Annotated[
    str | None, typer.Option("--source", help="yfinance | synthetic | csv:DIR (default: the config's source).")
]
FormatOption = Annotated[Format, typer.Option("--format", help="Output format.")]
DaskOption = Annotated[
    str | None, typer.Option("--dask-address", help="Run tasks on this Dask scheduler (e.g. tcp://host:8786).")
]


@app.callback()
def main_options(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Loan-book TOML (default ./marginwatch.toml, else the embedded book)."),
    ] = None,
    warehouse: Annotated[
        Path | None, typer.Option("--warehouse", help="DuckDB warehouse file (default ./marginwatch.duckdb).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and Prefect's logs.")] = False,
) -> None:
    """Daily loan-to-value of margin loans secured by pledged shares."""
    state.env = resolve_environment(config, warehouse)
    state.debug = debug
    set_prefect_defaults(debug)


def _book(source: str | None = None, dask_address: str | None = None) -> BookFrames:
    """Return the validated book, checking the source name before any flow starts."""
    from flows.sources import make_source

    book = _read_book()
    if dask_address:
        book = book.with_settings(
            book.settings.model_copy(update={"task_runner": "dask", "dask_address": dask_address})
        )
    make_source(source or book.settings.source, book.settings.synthetic_seed)
    check_channel_urls(book.channels)
    if state.env.config_is_embedded:
        err.print(f"[dim]using the embedded default book ({state.env.config_path.name}); no ./marginwatch.toml[/dim]")
    return book


def _show_summary(summary: RunSummary) -> None:
    from transforms.levels import level_changes

    label = " [bold yellow](SYNTHETIC DATA, not market prices)[/]" if summary.source == "synthetic" else ""
    out.print(
        f"run {summary.run_id}: {summary.flow} {summary.as_of_start} .. {summary.as_of_end}, "
        f"source {summary.source}{label}"
    )
    counts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in summary.counts.items())
    out.print(f"  {counts}")
    changes = level_changes(summary.ltv)
    if changes.height:
        render(changes.columns, changes.rows(), Format.table, out, title="Level changes in this run")
    latest = summary.ltv.sort("as_of_date").group_by("loan_id", maintain_order=True).last().sort("loan_id")
    view = latest.select(
        "loan_id",
        "as_of_date",
        "price_date",
        "ltv",
        "status",
        "distance_to_margin_call",
        "margin_call_price",
        "price",
        "currency",
        "is_stale",
    )
    render(view.columns, view.rows(), Format.table, out, title="Latest LTV per loan")
    _show_risk(summary)
    _show_alerts(summary)
    out.print(f"warehouse: {state.env.warehouse_path}")
    if summary.data_docs:
        out.print(f"data docs: {summary.data_docs}")
    if summary.report:
        out.print(f"report: {summary.report}")


def _show_risk(summary: RunSummary) -> None:
    import polars as pl

    if summary.risk is None or not summary.risk.height:
        return
    latest = summary.risk.filter(pl.col("as_of_date") == summary.as_of_end).select(
        "loan_id",
        "method",
        "p_margin_call_5d",
        "p_margin_call_21d",
        "p_liquidation_21d",
        "var_10d_99",
        "days_of_cover",
        "cure_period_days",
    )
    title = f"Chance of reaching a level within N sessions, from {summary.as_of_end}"
    render(latest.columns, latest.rows(), Format.table, out, title=title)


def _show_alerts(summary: RunSummary) -> None:
    alerts = summary.alerts
    raised = summary.counts.get("alerts", 0 if alerts is None else alerts.height)
    if alerts is not None and alerts.height:
        view = alerts.sort("as_of_date", "loan_id").select("as_of_date", "loan_id", "kind", "level", "subject")
        title = f"Alerts raised in this run ({raised})"
        if view.height > SHOWN_ALERTS or raised > view.height:  # a backfill of a book: the newest, the rest in SQL
            view = view.tail(SHOWN_ALERTS)
            title += f"; the newest {view.height} shown, every one is in marts.alerts"
        render(view.columns, view.rows(), Format.table, out, title=title)
    sent = [d for d in summary.deliveries if d.error is None]
    if summary.deliveries:
        out.print(f"alerts delivered: {len(sent)} of {len(summary.deliveries)} pending deliveries")


def _check_deliveries(summary: RunSummary) -> None:
    failed = summary.undelivered
    if failed:
        channels = sorted({d.channel for d in failed})
        raise DeliveryPending(
            f"{len(failed)} alert deliveries not acknowledged by {', '.join(channels)} ({failed[-1].error}); "
            "they stay pending: `marginwatch alerts retry`, or the next run, sends them"
        )


@contextmanager
def _summary_on_gate_failure() -> Iterator[None]:
    """Show what a run published before reporting that its quality gate failed."""
    try:
        yield
    except DataQualityError as exc:
        if exc.summary is not None:
            _show_summary(exc.summary)  # type: ignore[arg-type]
        raise


@app.command()
def run(
    as_of: Annotated[
        dt.datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="Session to compute (default: latest completed)."),
    ] = None,
    source: SourceOption = None,
    dask_address: DaskOption = None,
) -> None:
    """Run the daily flow: LTV through the as-of session, catching up missed sessions."""
    book = _book(source, dask_address)
    from flows.daily import daily
    from flows.runners import task_runner_for

    flow_fn = daily.with_options(task_runner=task_runner_for(book.settings))
    with _progress(), _summary_on_gate_failure():
        summary = flow_fn(
            str(state.env.config_path), str(state.env.warehouse_path), source, as_of.date() if as_of else None
        )
    _show_summary(summary)
    _check_deliveries(summary)


@app.command()
def backfill(
    start: Annotated[dt.datetime, typer.Option("--start", formats=["%Y-%m-%d"], help="First date.")],
    end: Annotated[
        dt.datetime | None, typer.Option("--end", formats=["%Y-%m-%d"], help="Last date (default: latest session).")
    ] = None,
    source: SourceOption = None,
    dask_address: DaskOption = None,
) -> None:
    """Compute LTV for every NASDAQ session in a date range, in one flow run."""
    book = _book(source, dask_address)
    from flows.backfill import backfill as backfill_flow
    from flows.runners import task_runner_for
    from marginwatch.calendar import latest_completed_session

    last = end.date() if end else latest_completed_session(dt.datetime.now(dt.UTC))
    flow_fn = backfill_flow.with_options(task_runner=task_runner_for(book.settings))
    with _progress(), _summary_on_gate_failure():
        summary = flow_fn(str(state.env.config_path), str(state.env.warehouse_path), start.date(), last, source)
    _show_summary(summary)
    _check_deliveries(summary)


@app.command()
def status(fmt: FormatOption = Format.table) -> None:
    """Show the latest LTV, level, distance to margin call and trigger price per loan."""
    from warehouse.queries import latest_status

    result = latest_status(state.env.warehouse_path, _read_timeout())
    render(result.columns, result.rows, fmt, out, title="Latest LTV per loan")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only SQL query (SELECT, WITH, DESCRIBE...).")],
    fmt: FormatOption = Format.table,
) -> None:
    """Run one read-only SQL query against the warehouse."""
    from warehouse.queries import run_query

    result = run_query(state.env.warehouse_path, query, _read_timeout())
    render(result.columns, result.rows, fmt, out)


@app.command()
def dq(
    start: Annotated[
        dt.datetime | None,
        typer.Option("--start", formats=["%Y-%m-%d"], help="Re-validate stored data from this date."),
    ] = None,
    end: Annotated[
        dt.datetime | None,
        typer.Option("--end", formats=["%Y-%m-%d"], help="Last date to re-validate (default: --start)."),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Show the latest data-quality results per suite, or re-validate a stored date range."""
    if start is None:
        if end is not None:
            raise InputError("--end needs --start")
        from warehouse.queries import latest_dq_results

        result = latest_dq_results(state.env.warehouse_path, _read_timeout())
        render(result.columns, result.rows, fmt, out, title="Latest data-quality results per suite")
        return
    _revalidate(start.date(), (end or start).date(), fmt)


def _revalidate(start: dt.date, end: dt.date, fmt: Format) -> None:
    from flows.revalidate import revalidate

    if start > end:
        raise InputError(f"--start {start} is after --end {end}")
    if not state.env.warehouse_path.exists():
        raise InputError(f"{state.env.warehouse_path}: no warehouse here yet; run `marginwatch run` first")
    settings = _read_book().settings
    outcome = revalidate(
        state.env.warehouse_path,
        start,
        end,
        settings.max_close_move,
        settings.lock_timeout_seconds,
        settings.data_docs_dir,
    )
    view = outcome.results.sort("suite", "success", "check_name")
    render(view.columns, view.rows(), fmt, out, title=f"Re-validation {start} .. {end} ({outcome.run_id})")
    if outcome.data_docs:
        err.print(f"data docs: {outcome.data_docs}")
    failed = outcome.blocking_failures
    if failed.height:
        names = ", ".join(f"{r['suite']}.{r['check_name']}" for r in failed.iter_rows(named=True))
        raise DataQualityError(f"stored data {start} .. {end} fails blocking checks: {names}")


@app.command()
def report(
    as_of: Annotated[
        dt.datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="Date to report (default: the latest LTV date)."),
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="HTML file to write (default <warehouse name>-reports/report-DATE.html)."),
    ] = None,
) -> None:
    """Write the daily HTML report and its chart as a PNG beside it; print both paths."""
    from marginwatch.report import write_report

    files = write_report(state.env.warehouse_path, as_of.date() if as_of else None, out_file, _read_timeout())
    out.print(f"report: {files.html}", markup=False, highlight=False)
    out.print(f"chart: {files.png}", markup=False, highlight=False)


@app.command()
def backtest(
    symbol: Annotated[str, typer.Option("--symbol", help="A staged symbol whose closes are tested.")] = "ARM",
    fall: Annotated[float, typer.Option("--fall", min=0.01, max=0.99, help="The fall tested, e.g. 0.2 for 20%.")] = 0.2,
    sessions: Annotated[int, typer.Option("--sessions", help="The horizon in sessions: 1, 5, 10 or 21.")] = 10,
    fmt: FormatOption = Format.table,
) -> None:
    """Compare predicted and realised chances of a fall within a horizon, over a symbol's staged history."""
    from flows.run import risk_model
    from marginwatch import calendar
    from transforms.backtest import calibrate_backtest, predict_falls, summarise_backtest
    from transforms.paths import HORIZONS
    from warehouse.queries import symbol_closes

    if sessions not in HORIZONS:
        raise InputError(f"--sessions must be one of {', '.join(map(str, HORIZONS))}, got {sessions}")
    closes = symbol_closes(state.env.warehouse_path, symbol, _read_timeout())
    days = calendar.sessions_between(closes["session_date"].min(), closes["session_date"].max()).to_list()  # type: ignore[arg-type]
    model = risk_model(_read_book().settings.risk)
    scored = predict_falls(closes, days, model, fall, sessions)
    title = f"{symbol}: falls of {fall:.0%} or more within {sessions} sessions, {days[0]} .. {days[-1]}"
    summary = summarise_backtest(scored)
    render(summary.columns, summary.rows(), fmt, out, title=title)
    calibration = calibrate_backtest(scored)
    render(calibration.columns, calibration.rows(), fmt, out, title="By predicted chance")


alerts_app = typer.Typer(help="The alert record and its deliveries.", no_args_is_help=False)
app.add_typer(alerts_app, name="alerts")


@alerts_app.callback(invoke_without_command=True)
def alerts_list(
    ctx: typer.Context,
    pending: Annotated[bool, typer.Option("--pending", help="Only alerts with a delivery still pending.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """List alerts with their delivery status per channel (newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    from warehouse.queries import list_alerts

    result = list_alerts(state.env.warehouse_path, _read_timeout(), pending_only=pending)
    render(result.columns, result.rows, fmt, out, title="Alerts")


@alerts_app.command("retry")
def alerts_retry() -> None:
    """Deliver every pending alert now; exit 7 if a channel still does not acknowledge."""
    from flows.alerting import deliver_alerts
    from warehouse.connection import run_lock

    book = _read_book()
    path = state.env.warehouse_path
    if not path.exists():
        raise InputError(f"{path}: no warehouse here yet; run `marginwatch run` first")
    with run_lock(path, book.settings.lock_timeout_seconds):
        outcomes = deliver_alerts.fn(path, book.settings.lock_timeout_seconds, book)
    failed = [o for o in outcomes if o.error is not None]
    out.print(f"alerts delivered: {len(outcomes) - len(failed)} of {len(outcomes)} pending deliveries")
    if failed:
        raise DeliveryPending(
            f"{len(failed)} alert deliveries still not acknowledged ({failed[-1].channel}: {failed[-1].error})"
        )


@app.command()
def serve(
    source: SourceOption = None,
    cron: Annotated[str, typer.Option("--cron", help="When the daily deployment runs.")] = "30 17 * * 1-5",
    timezone: Annotated[str, typer.Option("--timezone", help="Time zone of the cron schedule.")] = "America/New_York",
) -> None:
    """Register and serve the deployments (daily on a schedule, backfill on demand) with a Prefect API."""
    from marginwatch.config import prefect_api_url
    from marginwatch.serving import check_api
    from marginwatch.serving import serve as serve_deployments

    check_channel_urls(_read_book().channels)  # a broken book, or a channel without its URL, fails now, not at 17:30
    api = prefect_api_url()
    check_api(api)
    config = None if state.env.config_is_embedded else state.env.config_path
    err.print(f"serving marginwatch deployments on {api}: daily at '{cron}' {timezone}; Ctrl-C stops")
    serve_deployments(config, state.env.warehouse_path, source, cron, timezone)


@app.command()
def backup(
    directory: Annotated[Path | None, typer.Option("--dir", help="Where to put it (default <name>-backups/).")] = None,
) -> None:
    """Copy the warehouse to a new backup, under the run lock; the newest `backups_kept` are kept."""
    from warehouse.backup import take_backup
    from warehouse.connection import run_lock

    settings = _read_book().settings
    with run_lock(state.env.warehouse_path, settings.lock_timeout_seconds):
        target = take_backup(
            state.env.warehouse_path,
            max(settings.backups_kept, 1),
            dt.datetime.now(dt.UTC),
            directory,
            settings.lock_timeout_seconds,
        )
    out.print(f"backup: {target}")


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A backup made by `marginwatch backup` (or the daily flow).")],
) -> None:
    """Replace the warehouse with a backup, under the run lock; the replaced file is kept beside it."""
    from warehouse.backup import restore_backup
    from warehouse.connection import run_lock

    if not file.is_file():
        raise InputError(f"{file}: no such backup file")
    settings = _read_book().settings
    with run_lock(state.env.warehouse_path, settings.lock_timeout_seconds):
        aside = restore_backup(state.env.warehouse_path, file)
    out.print(f"restored {file} into {state.env.warehouse_path}; the replaced warehouse is {aside}")


def _read_book() -> BookFrames:
    """Return the validated book the command runs with (kept between commands when it is large)."""
    from marginwatch.book_cache import read_book

    return read_book(state.env.config_path)


def _read_timeout() -> float:
    try:
        return _read_book().settings.lock_timeout_seconds
    except InputError:
        return 60.0  # reading needs no valid book; a broken one is reported by `run`


class _progress:
    """Show a progress bar on a terminal while a flow runs; silent elsewhere."""

    def __enter__(self) -> None:
        from flows.progress import set_reporter

        if not err.is_terminal:
            return
        from rich.progress import Progress

        self.bar = Progress(console=err, transient=True)
        self.bar.start()
        names = ("fetch", "validate", "stage", "compute", "risk", "load")
        stages = {name: self.bar.add_task(name, total=None) for name in names}
        set_reporter(lambda stage, done, total: self.bar.update(stages[stage], completed=done, total=total))

    def __exit__(self, *exc: object) -> None:
        from flows.progress import set_reporter

        set_reporter(None)
        if hasattr(self, "bar"):
            self.bar.stop()


def _settle_prefect() -> None:
    """Let Prefect's background senders finish before the last line is written.

    A flow run leaves its state events (and, with --debug, its logs) queued for the Prefect API;
    Prefect sends them when the interpreter exits, waiting as long as they take, and on a slow API
    it warns on stderr while it waits. Sending them first, with the same patience, keeps those
    warnings above the error line, which stays the last; the command ends no later than before.
    """
    if "prefect" not in sys.modules:
        return
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for service in (APILogWorker, EventsWorker):
            service.drain_all()
    except Exception as exc:  # the error line matters more than Prefect's last events
        if state.debug:
            err.print(f"marginwatch: could not send Prefect's last events first: {exc}", markup=False)


def main() -> None:
    """Entry point: run the app; a MarginwatchError ends with one line and its exit code."""
    try:
        app(standalone_mode=True)
    except MarginwatchError as exc:
        if state.debug:
            traceback.print_exc()
        _settle_prefect()
        err.print(f"marginwatch: error: {exc}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("marginwatch: interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:
        if state.debug or os.environ.get("MARGINWATCH_DEBUG"):
            raise
        _settle_prefect()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        err.print(f"marginwatch: internal error: {type(exc).__name__}: {first} (rerun with --debug)", markup=False)
        sys.exit(1)
