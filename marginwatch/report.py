"""The daily report: one self-contained HTML page (chart embedded) and the chart as a PNG beside it."""

from __future__ import annotations

import base64
import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, PackageLoader, StrictUndefined

from marginwatch import report_view as view
from marginwatch.compiled_templates import template_cache
from marginwatch.errors import InputError
from marginwatch.report_data import CHART_LOANS, HISTORY_SESSIONS, ReportData, read_report_data
from warehouse.connection import open_reader

RUN_TINTS = {"succeeded": "ok", "skipped": "ok", "dq_failed": "margin_call", "failed": "liquidation"}


@dataclass(frozen=True)
class ReportFiles:
    """The files a report wrote: the HTML page and its chart."""

    html: Path
    png: Path


def report_paths(warehouse: Path, as_of: dt.date, out: Path | None) -> ReportFiles:
    """Return where the report goes: `out` (PNG beside it, same stem), else `<warehouse stem>-reports/` beside it."""
    html = out if out is not None else warehouse.parent / f"{warehouse.stem}-reports" / f"report-{as_of}.html"
    return ReportFiles(html=html, png=html.with_suffix(".png"))


def write_report(warehouse: Path, as_of: dt.date | None, out: Path | None, timeout: float) -> ReportFiles:
    """Write the report for `as_of` (default: the latest LTV date) and return its files."""
    if out is not None and out.suffix.lower() == ".png":
        raise InputError(f"{out}: --out names the HTML file; the PNG chart is written beside it")
    with open_reader(warehouse, timeout) as con:
        data = read_report_data(con, as_of)
    from marginwatch.report_chart import render_chart  # matplotlib loads only when a report is made

    charted = data.loans.head(CHART_LOANS)
    png = render_chart(charted, data.history)
    files = report_paths(warehouse, data.as_of, out)
    page = render_html(data, png, charted, warehouse.name)
    files.html.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(files.png, png)
    _write_atomically(files.html, page.encode("utf-8"))
    return files


def _write_atomically(path: Path, content: bytes) -> None:
    """Write `content` to a temporary file beside `path` and rename it over `path`, so no reader sees half a file."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; a report is meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def render_html(data: ReportData, png: bytes, charted: pl.DataFrame, warehouse_name: str) -> str:
    """Return the report page: headline, chart, tables of loans, stress, risk, alerts and data quality."""
    environment = Environment(
        loader=PackageLoader("marginwatch", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        bytecode_cache=template_cache(),
    )
    template = environment.get_template("report.html.j2")
    return template.render(**_context(data, png, charted, warehouse_name))


def _context(data: ReportData, png: bytes, charted: pl.DataFrame, warehouse_name: str) -> dict[str, Any]:
    loans = data.loans
    return {
        "as_of": data.as_of,
        "warehouse": warehouse_name,
        "headline": _headline(loans),
        "synthetic": bool(loans.filter(pl.col("source").str.contains("synthetic")).height),
        "chart_src": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        "chart_alt": chart_alt(charted, loans.height),
        "chart_caption": _chart_caption(charted.height, loans.height),
        "loans": view.loans_table(loans),
        "stress": None if data.stress is None else view.stress_table(data.stress, loans),
        "stress_missing": _missing(data.stress, loans),
        "probabilities": None if data.risk is None else view.probability_table(data.risk, loans),
        "cushion": None if data.risk is None else view.cushion_table(data.risk, loans),
        "risk_missing": _missing(data.risk, loans),
        "breaches": view.breach_table(data.breach_alerts, loans),
        "pending": view.pending_table(data.pending),
        "run": _run(data.run),
        "checks_run": data.checks_run,
        "checks_passed": data.checks_run - data.failed_checks.height,
        "failed_checks": view.failed_checks_table(data.failed_checks),
    }


def _headline(loans: pl.DataFrame) -> dict[str, Any]:
    counts = dict(loans.group_by("status").len().iter_rows())
    return {
        "loans": loans.height,
        "counts": [(status, view.label(status), counts.get(status, 0)) for status in reversed(view.STATUSES)],
        "stale": int(loans["is_stale"].sum()),
    }


def _missing(frame: pl.DataFrame | None, loans: pl.DataFrame) -> int:
    """Return how many loans of the date have no rows in a risk table that has some."""
    return 0 if frame is None else loans.height - frame["loan_id"].n_unique()


def chart_alt(charted: pl.DataFrame, total: int) -> str:
    """Return the chart's text alternative: what it shows, and each charted loan's LTV against its levels."""
    parts = [
        f"{r['loan_id']}: LTV {view.pct(r['ltv'])} ({view.label(r['status'])}); levels "
        + ", ".join(f"{view.label(s)} {view.pct(r[f'{s}_ltv'], 0)}" for s in view.STATUSES[1:])
        for r in charted.iter_rows(named=True)
    ]
    return (
        "LTV history with warning, margin-call and liquidation bands, and price (or collateral value) with the "
        f"trigger at each level, over up to {HISTORY_SESSIONS} sessions, for {_shown(charted.height, total)}. "
        + ". ".join(parts)
        + "."
    )


def _chart_caption(charted: int, total: int) -> str:
    more = "" if charted == total else "; the tables list more"
    return f"History of {_shown(charted, total)}, up to {HISTORY_SESSIONS} sessions{more}."


def _shown(charted: int, total: int) -> str:
    if total == 1:
        return "the loan"
    return f"all {total} loans" if charted == total else f"the {charted} riskiest of {total} loans"


def _run(run: dict[str, Any] | None) -> dict[str, Any] | None:
    if run is None:
        return None
    error = (run["error"] or "").strip()
    return {
        **run,
        "tint": RUN_TINTS.get(run["status"], ""),
        "status_label": view.label(run["status"]),
        "sessions": f"{run['as_of_start']} .. {run['as_of_end']}" if run["as_of_start"] else view.DASH,
        "finished": run["finished_at"].strftime("%Y-%m-%d %H:%M %Z") if run["finished_at"] else view.DASH,
        "error": error.splitlines()[0][:500] if error else "",
    }
