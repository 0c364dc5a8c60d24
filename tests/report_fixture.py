"""A small warehouse of literal rows for the report tests: two loans over 30 sessions, with risk, alerts and DQ."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb

from warehouse.migrate import migrate

AS_OF = dt.date(2026, 3, 27)
USD_LOAN, JPY_LOAN = "acme-arm-usd", "acme-multi-jpy"
LEVELS = {USD_LOAN: (0.40, 0.50, 0.65, 0.35), JPY_LOAN: (0.40, 0.55, 0.70, 0.35)}
RUN, FAILED_RUN = "run-0001", "run-0002"
UTC = dt.UTC


def sessions(last: dt.date = AS_OF, count: int = 30) -> list[dt.date]:
    """Return the `count` weekdays up to `last`, oldest first (no holidays: the report reads whatever is stored)."""
    days: list[dt.date] = []
    day = last
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= dt.timedelta(days=1)
    return days[::-1]


def _status(ltv: float, levels: tuple[float, float, float, float]) -> str:
    """Return the highest level reached, as the pipeline derives it."""
    reached = [
        name for name, level in zip(("warning", "margin_call", "liquidation"), levels, strict=False) if ltv >= level
    ]
    return reached[-1] if reached else "ok"


def ltv_row(
    loan: str, day: dt.date, collateral: float, balance: float, price: float | None, shares: float
) -> tuple[Any, ...]:
    """Return one marts.loan_ltv_daily row in column order, derived as the pipeline derives it."""
    levels = LEVELS.get(loan, (0.40, 0.50, 0.65, 0.35))
    ltv = balance / collateral
    currency = "JPY" if loan == JPY_LOAN else "USD"
    mc_price = balance / (shares * levels[1]) if price is not None else None
    liq_price = balance / (shares * levels[2]) if price is not None else None
    cure_cash = max(0.0, balance - levels[3] * collateral)
    cure_shares = max(0.0, (balance / levels[3] - collateral) / price) if price is not None else None
    return (
        loan, day, day, None, currency, collateral, balance, ltv, _status(ltv, levels), price,
        1.0 if price is not None else None, mc_price, liq_price, 1 - ltv / levels[1], cure_cash, cure_shares,
        0, False, *levels, "synthetic", RUN, False,
    )  # fmt: skip


def _ltv_rows(days: list[dt.date]) -> list[tuple[Any, ...]]:
    rows = []
    for i, day in enumerate(days):
        price = 100.0 - 52.0 * i / (len(days) - 1)  # 100 -> 48: the USD loan ends in margin call
        rows.append(ltv_row(USD_LOAN, day, 40e6 * price, 1e9, price, 40e6))
        collateral = 500e9 - 170e9 * i / (len(days) - 1)  # JPY loan on several tickers ends in warning
        rows.append(ltv_row(JPY_LOAN, day, collateral, 150e9, None, 1.0))
    return rows


def _stress_rows(latest: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    rows = []
    for row in latest:
        loan, collateral, balance = row[0], row[5], row[6]
        levels = LEVELS[loan]
        fx_shocks = (-0.1, 0.0, 0.1) if loan == JPY_LOAN else (0.0,)
        for price_shock in (0.0, -0.1, -0.2, -0.3):
            for fx_shock in fx_shocks:
                value = collateral * (1 + price_shock) * (1 + fx_shock)
                ltv = balance / value
                cure = max(0.0, balance - levels[3] * value)
                rows.append(
                    (loan, AS_OF, price_shock, fx_shock, row[4], value, balance, ltv, _status(ltv, levels), cure, RUN)
                )
    return rows


def _risk_rows(latest: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    rows = []
    for row in latest:
        loan, collateral, ltv, price = row[0], row[5], row[7], row[9]
        levels = LEVELS[loan]
        falls = [1 - ltv / level for level in levels[:3]]
        prices = [price * (1 - f) if price is not None else None for f in falls]
        for k, method in enumerate(("ewma_mc", "filtered_bootstrap")):
            p_mc = (0.61, 0.83, 0.9, 0.95) if loan == USD_LOAN else (0.0004, 0.031, 0.072, 0.15)
            p_liq = (0.012, 0.18, 0.31, 0.47) if loan == USD_LOAN else (0.0, 0.0, 0.001, 0.02)
            sigma = 0.041 + 0.002 * k
            rows.append((
                loan, AS_OF, method, row[4], collateral, 250, sigma, 10_000, 20260327,
                collateral * 2.33 * sigma, collateral * 2.33 * sigma * 10**0.5, *p_mc, *p_liq,
                max(falls[1], 0.0) / sigma, 3, *falls, *prices, RUN,
            ))  # fmt: skip
    return rows


def _alert(
    loan: str, day: dt.date, kind: str, level: str, subject: str, deadline: dt.date | None = None
) -> tuple[Any, ...]:
    key = f"{loan}/{day}/{kind}/{level}"
    created = dt.datetime.combine(day, dt.time(22), UTC)
    return (
        key, loan, day, kind, level, None, day, "USD", 0.5, None, None, None, None, 0.0, None, None, deadline,
        1 if deadline else None, False, None, "synthetic", subject, subject, RUN, created,
    )  # fmt: skip


def _alerts(days: list[dt.date]) -> list[tuple[Any, ...]]:
    return [
        _alert(USD_LOAN, days[-10], "level", "warning", "WARNING acme-arm-usd: LTV 41.0%"),
        _alert(USD_LOAN, days[-3], "level", "margin_call", "MARGIN CALL acme-arm-usd: LTV 50.4%"),
        _alert(USD_LOAN, days[-1], "reminder", "margin_call", "MARGIN CALL acme-arm-usd: cure by 2026-04-01 (2 left)", dt.date(2026, 4, 1)),
        _alert(JPY_LOAN, days[-6], "level", "warning", "WARNING acme-multi-jpy: LTV 40.2% <check>"),
    ]  # fmt: skip


def _outbox(alerts: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    rows = []
    for i, alert in enumerate(alerts):
        created = alert[-1]
        pending = i == 2
        rows.append((alert[0], "risk-desk", "pending" if pending else "delivered", 3 if pending else 1,
                     "HTTP 503" if pending else None, created, created, None if pending else created))  # fmt: skip
    return rows


def _runs_and_dq() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    started = dt.datetime(2026, 3, 27, 22, 0, tzinfo=UTC)
    runs = [
        (RUN, "daily", "{}", "synthetic", AS_OF, AS_OF, started, started, "succeeded", 2, 2, 0, 2, None, None, None),
        (FAILED_RUN, "daily", "{}", "synthetic", AS_OF, AS_OF, started + dt.timedelta(hours=1),
         started + dt.timedelta(hours=1, minutes=1), "dq_failed", 2, 0, 0, 0,
         "data-quality gate failed: prices.close_positive <blocking>", None, None),
    ]  # fmt: skip
    dq = [
        (FAILED_RUN, "prices", "close_positive", "expect_column_values_to_be_between", "close", "blocking", False,
         "-3.5", 1, 2, started),
        (FAILED_RUN, "prices", "session_unique", "expect_compound_columns_to_be_unique", "symbol,session_date",
         "blocking", True, None, 0, 2, started),
    ]  # fmt: skip
    return runs, dq


def _extra_loans(days: list[dt.date], count: int) -> list[tuple[Any, ...]]:
    """Return LTV rows for `count` more single-ticker USD loans, each a little riskier than the last."""
    rows = []
    for n in range(count):
        for i, day in enumerate(days):
            price = 100.0 - (20 + n) * i / (len(days) - 1)
            rows.append(ltv_row(f"book-{n:03d}", day, 10e6 * price, 3e8, price, 10e6))
    return rows


def build_warehouse(path: Path, *, risk: bool = True, extra_loans: int = 0, days: int = 30) -> Path:
    """Write a migrated warehouse of literal rows to `path` and return it; `risk=False` leaves risk tables empty."""
    span = sessions(AS_OF, days)
    ltv = _ltv_rows(span) + _extra_loans(span, extra_loans)
    alerts = _alerts(span)
    runs, dq = _runs_and_dq()
    with duckdb.connect(str(path)) as con:
        migrate(con, path)
        _insert(con, "marts.loan_ltv_daily", ltv)
        if risk:
            latest = [row for row in ltv if row[1] == AS_OF and row[0] in LEVELS]
            _insert(con, "marts.loan_stress_daily", _stress_rows(latest))
            _insert(con, "marts.loan_risk_daily", _risk_rows(latest))
        _insert(con, "marts.alerts", alerts)
        _insert(con, "meta.alert_outbox", _outbox(alerts))
        _insert(con, "meta.runs", runs)
        _insert(con, "meta.dq_results", dq)
        con.execute("CHECKPOINT")  # everything in the file itself, no write-ahead log beside it
    return path


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
