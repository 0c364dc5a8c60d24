"""Render query results and run summaries as a table, CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

PERCENT_COLUMNS = {
    "ltv",
    "distance_to_margin_call",
    "price_shock",
    "fx_shock",
    "fall_to_warning",
    "fall_to_margin_call",
    "fall_to_liquidation",
    "sigma_1d",
    *(f"p_{level}_{h}d" for level in ("margin_call", "liquidation") for h in (1, 5, 10, 21)),
    "mean_predicted",
    "realised",
}


class Format(StrEnum):
    """Output formats of the query commands."""

    table = "table"
    csv = "csv"
    json = "json"


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if column in PERCENT_COLUMNS:
            return f"{value:.2%}"
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.6g}"
    return str(_plain(value))


def render(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: Format, console: Console, title: str = ""
) -> None:
    """Write rows to the console in the chosen format."""
    if fmt is Format.json:
        payload = [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        console.file.write(json.dumps(payload, indent=2) + "\n")
    elif fmt is Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_plain(v) for v in row] for row in rows])
        console.file.write(buffer.getvalue())
    else:
        table = Table(title=title or None, show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*[_cell(c, v) for c, v in zip(columns, row, strict=True)])
        console.print(table)
