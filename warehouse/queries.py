"""Read-only queries: user SQL behind a statement guard, and the latest status per loan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from marginwatch.errors import InputError
from warehouse.connection import open_reader

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a finished query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def check_read_only_sql(sql: str) -> None:
    """Raise InputError unless `sql` is exactly one SELECT or EXPLAIN statement."""
    try:
        statements = duckdb.connect(":memory:").extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(f"SQL does not parse: {_first_line(str(exc))}") from None
    if len(statements) != 1:
        raise InputError(f"SQL must be exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind not in _ALLOWED:
        raise InputError(f"SQL refused: {kind.name} statements are not allowed; only SELECT queries run here")


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


def run_query(path: Path, sql: str, timeout: float) -> QueryResult:
    """Return the result of one read-only query on the warehouse; InputError for refused or bad SQL."""
    check_read_only_sql(sql)
    with open_reader(path, timeout) as con:
        try:
            cursor = con.execute(sql)
            rows = cursor.fetchall()
        except duckdb.Error as exc:
            raise InputError(f"SQL failed: {_first_line(str(exc))}") from None
        columns = [d[0] for d in cursor.description or []]
    return QueryResult(columns, rows)


LATEST_STATUS_SQL = """
SELECT l.loan_id, l.as_of_date, l.price_date, l.currency, l.ltv, l.status, l.distance_to_margin_call,
       l.margin_call_price, l.price, r.p_margin_call_10d, r.days_of_cover, l.collateral_value,
       l.loan_balance, l.is_stale, l.source
FROM marts.loan_ltv_latest l
LEFT JOIN marts.loan_risk_daily r ON r.loan_id = l.loan_id AND r.as_of_date = l.as_of_date AND r.method = 'ewma_mc'
ORDER BY l.loan_id
"""


def latest_status(path: Path, timeout: float) -> QueryResult:
    """Return the latest LTV row per loan (grain: one row per loan)."""
    return run_query(path, LATEST_STATUS_SQL, timeout)


LATEST_DQ_SQL = """
SELECT r.suite, r.check_name, r.severity, r.success, r.unexpected_count, r.element_count,
       r.observed_value, r.run_id, r.validated_at
FROM meta.dq_results AS r
JOIN (SELECT suite, arg_max(run_id, validated_at) AS run_id FROM meta.dq_results GROUP BY suite) AS latest
  USING (suite, run_id)
ORDER BY r.suite, r.success, r.severity, r.check_name
"""


def latest_dq_results(path: Path, timeout: float) -> QueryResult:
    """Return each suite's results from the latest run that validated it (grain: suite x check)."""
    return run_query(path, LATEST_DQ_SQL, timeout)


ALERTS_SQL = """
SELECT a.as_of_date, a.loan_id, a.kind, a.level, a.subject, o.channel, o.status AS delivery,
       o.attempts, o.last_error, o.delivered_at, a.alert_key
FROM marts.alerts a LEFT JOIN meta.alert_outbox o USING (alert_key)
{where}
ORDER BY a.as_of_date DESC, a.loan_id, a.kind, o.channel
"""


def list_alerts(path: Path, timeout: float, pending_only: bool = False) -> QueryResult:
    """Return alerts with one row per delivery channel (grain: alert x channel; undelivered-only if asked)."""
    where = "WHERE o.status = 'pending'" if pending_only else ""
    return run_query(path, ALERTS_SQL.format(where=where), timeout)


def symbol_closes(path: Path, symbol: str, timeout: float) -> pl.DataFrame:
    """Return a symbol's staged closes (grain: session date); InputError when none are staged."""
    with open_reader(path, timeout) as con:
        closes = con.sql(
            "SELECT session_date, close FROM staging.prices WHERE symbol = $symbol ORDER BY session_date",
            params={"symbol": symbol},
        ).pl()
        if not closes.height:
            staged = [row[0] for row in con.execute("SELECT DISTINCT symbol FROM staging.prices ORDER BY 1").fetchall()]
            listed = ", ".join(staged) or "none"
            raise InputError(f"no staged prices for {symbol!r} in {path}; staged symbols: {listed}")
    return closes
