"""The report's tables as formatted cells: amounts with currency codes, percentages, status badges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

MAX_ROWS = 50
STATUSES = ("ok", "warning", "margin_call", "liquidation")
METHODS = {"ewma_mc": "EWMA Monte Carlo", "filtered_bootstrap": "Filtered bootstrap"}
DASH = "—"


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, smaller lines under it, and a status shown as a badge or as a tint."""

    text: str
    notes: tuple[str, ...] = ()  # smaller lines under the text
    badge: str = ""  # a status, shown as a coloured badge after the text
    tint: str = ""  # a status: the cell's background takes its colour
    numeric: bool = True

    @property
    def badge_text(self) -> str:
        """Return the badge's words."""
        return label(self.badge)

    @property
    def css(self) -> str:
        """Return the cell's class attribute: right-aligned figures, status tint."""
        return " ".join(c for c in ("num" if self.numeric else "", f"tint-{self.tint}" if self.tint else "") if c)


@dataclass(frozen=True)
class Table:
    """Rows of cells under column headers (optionally grouped); `omitted` rows did not fit."""

    caption: str
    columns: list[str]
    rows: list[list[Cell]]
    omitted: int = 0
    groups: list[tuple[str, int]] = field(default_factory=list)


def label(status: str) -> str:
    """Return a status or method name as words ("margin_call" -> "margin call")."""
    return status.replace("_", " ")


def pct(value: float | None, digits: int = 1) -> str:
    """Return a fraction as a percentage, or a dash when missing."""
    return DASH if value is None else f"{value:.{digits}%}"


def prob(value: float | None) -> str:
    """Return a probability as a percentage; tiny non-zero ones as "<0.1%" rather than a misleading 0.0%."""
    if value is None:
        return DASH
    if value == 0:
        return "0%"
    return "<0.1%" if value < 0.001 else f"{value:.1%}"


def money(value: float | None, currency: str | None) -> str:
    """Return an amount with thousands separators and its currency code."""
    return DASH if value is None else f"{value:,.0f} {currency or ''}".rstrip()


def price(value: float | None, currency: str | None) -> str:
    """Return a share price to the cent with its currency code when known."""
    return DASH if value is None else f"{value:,.2f} {currency or ''}".rstrip()


def shock(value: float) -> str:
    """Return a shock as a signed percentage ("-20%", "+10%", "0%")."""
    return "0%" if value == 0 else f"{value:+.0%}"


def text(value: Any) -> Cell:
    """Return a left-aligned text cell."""
    return Cell(DASH if value is None else str(value), numeric=False)


def _limit(rows: list[list[Cell]]) -> tuple[list[list[Cell]], int]:
    return rows[:MAX_ROWS], max(0, len(rows) - MAX_ROWS)


def _rank(loans: pl.DataFrame) -> dict[str, int]:
    return {loan_id: i for i, loan_id in enumerate(loans["loan_id"].to_list())}


def loans_table(loans: pl.DataFrame) -> Table:
    """Return one row per loan, riskiest first: level, LTV against its levels, trigger prices and amounts."""
    shown = [_loan_row(loan) for loan in loans.head(MAX_ROWS).iter_rows(named=True)]  # a book's riskiest only
    omitted = max(0, loans.height - MAX_ROWS)
    columns = ["Loan and level", "Now", "Warning / margin call / liquidation", "Fall to margin call", "Now",
               "Margin call", "Liquidation", "Collateral value", "Loan balance", "Cure cash"]  # fmt: skip
    groups = [("", 1), ("LTV", 3), ("Price", 3), ("Amounts", 3)]
    caption = "Loans at the as-of date, riskiest first (LTV relative to its margin-call level)"
    return Table(caption, columns, shown, omitted, groups)


def _fall(fall: float) -> Cell:
    """Return the uniform price fall that reaches a level; zero or negative means the level is already reached."""
    return Cell(pct(fall), notes=("reached",) if fall <= 0 else ())


def _loan_row(loan: dict[str, Any]) -> list[Cell]:
    ccy, pccy = loan["currency"], loan["price_currency"]
    flags = {
        f"priced {loan['price_date']}": loan["price_date"] != loan["as_of_date"],
        "stale price": loan["is_stale"],
        "unconfirmed price": loan.get("is_unconfirmed"),
    }
    levels = " / ".join(pct(loan[f"{s}_ltv"], 0) for s in STATUSES[1:])
    return [
        Cell(loan["loan_id"], tuple(flag for flag, on in flags.items() if on), loan["status"], numeric=False),
        Cell(pct(loan["ltv"]), tint=loan["status"]),
        Cell(levels, notes=(f"cure to {pct(loan['cure_target_ltv'], 0)}",)),
        _fall(loan["distance_to_margin_call"]),
        Cell(price(loan["price"], pccy), notes=() if loan["price"] is not None else ("several tickers",)),
        Cell(price(loan["margin_call_price"], pccy)),
        Cell(price(loan["liquidation_price"], pccy)),
        Cell(money(loan["collateral_value"], ccy)),
        Cell(money(loan["loan_balance"], ccy)),
        Cell(money(loan["cure_cash"], ccy)),
    ]


def stress_table(stress: pl.DataFrame, loans: pl.DataFrame) -> Table:
    """Return stressed LTV per loan and FX shock (rows) and price shock (columns), riskiest loans first."""
    rank = _rank(loans)
    price_shocks = sorted(stress["price_shock"].unique().to_list(), reverse=True)
    cells = {(r["loan_id"], r["fx_shock"], r["price_shock"]): r for r in stress.iter_rows(named=True)}
    keys = sorted({(r[0], r[1]) for r in cells}, key=lambda k: (rank.get(k[0], len(rank)), -k[1], k[0]))
    cross = {loan for loan, fx in keys if fx != 0}
    rows = []
    for loan_id, fx in keys:
        row = [text(loan_id), Cell(shock(fx)) if loan_id in cross else Cell("none", notes=("same currency",))]
        row += [_stress_cell(cells.get((loan_id, fx, p))) for p in price_shocks]
        rows.append(row)
    shown, omitted = _limit(rows)
    columns = ["Loan", "FX shock", *(shock(p) for p in price_shocks)]
    caption = "Stressed LTV, level and cure cash per price shock (columns) and FX shock of the collateral currency"
    return Table(caption, columns, shown, omitted, groups=[("", 2), ("Price shock", len(price_shocks))])


def _stress_cell(row: dict[str, Any] | None) -> Cell:
    if row is None:
        return Cell(DASH)
    notes = (label(row["status"]), f"cure {money(row['cure_cash'], row['currency'])}")
    return Cell(pct(row["ltv"]), notes=notes, tint=row["status"])


def _risk_rows(risk: pl.DataFrame, loans: pl.DataFrame) -> list[dict[str, Any]]:
    rank, methods = _rank(loans), list(METHODS)
    method = {m: i for i, m in enumerate(methods)}
    return sorted(
        risk.iter_rows(named=True),
        key=lambda r: (rank.get(r["loan_id"], len(rank)), r["loan_id"], method.get(r["method"], len(methods))),
    )


def _method(name: str) -> Cell:
    return text(METHODS.get(name, label(name)))


def probability_table(risk: pl.DataFrame, loans: pl.DataFrame) -> Table:
    """Return, per loan and method, the probability of reaching margin call and liquidation within N sessions."""
    horizons = (1, 5, 10, 21)
    rows = [
        [text(r["loan_id"]), _method(r["method"])]
        + [Cell(prob(r[f"p_margin_call_{h}d"])) for h in horizons]
        + [Cell(prob(r[f"p_liquidation_{h}d"])) for h in horizons]
        for r in _risk_rows(risk, loans)
    ]
    shown, omitted = _limit(rows)
    columns = ["Loan", "Method", *[f"{h} session" if h == 1 else f"{h} sessions" for h in horizons] * 2]
    groups = [("", 2), ("Margin call within", 4), ("Liquidation within", 4)]
    caption = "Probability that LTV reaches the level within 1, 5, 10 and 21 sessions"
    return Table(caption, columns, shown, omitted, groups)


def cushion_table(risk: pl.DataFrame, loans: pl.DataFrame) -> Table:
    """Return, per loan and method, value-at-risk, days of cover against the cure period and falls to each level."""
    shown, omitted = _limit([_cushion_row(r) for r in _risk_rows(risk, loans)])
    columns = ["Loan", "Method", "Daily volatility", "1 day, 99%", "10 days, 99%", "Days of cover vs cure period",
               "Warning", "Margin call", "Liquidation"]  # fmt: skip
    groups = [("", 2), ("Value at risk of the collateral", 3), ("Cover", 1), ("Price fall to reach", 3)]
    caption = "Value at risk, days of cover against the cure period (sessions), and the price fall to each level"
    return Table(caption, columns, shown, omitted, groups)


def _cushion_row(r: dict[str, Any]) -> list[Cell]:
    ccy, cover, cure = r["currency"], r["days_of_cover"], r["cure_period_days"]
    # Fewer days of cover than the cure period: a typical run of falls reaches margin call before a cure is due.
    short = cover is not None and cover < cure
    return [
        text(r["loan_id"]),
        _method(r["method"]),
        Cell(pct(r["sigma_1d"], 2)),
        Cell(money(r["var_1d_99"], ccy)),
        Cell(money(r["var_10d_99"], ccy)),
        Cell(
            f"{DASH if cover is None else f'{cover:,.1f}'} vs {cure}",
            notes=("shorter than the cure period",) if short else (),
            tint="margin_call" if short else "",
        ),
        *(_fall(r[f"fall_to_{s}"]) for s in STATUSES[1:]),
    ]


def breach_table(alerts: pl.DataFrame, loans: pl.DataFrame) -> Table:
    """Return the latest alert rows of each loan at margin call or above, riskiest first."""
    breached = loans.filter(pl.col("status").is_in(["margin_call", "liquidation"]))
    per_loan = breached.select("loan_id").join(alerts.group_by("loan_id").len(), on="loan_id", how="left")
    total = int(per_loan["len"].fill_null(1).sum())  # a breached loan without alerts takes a row of its own
    rows: list[list[Cell]] = []
    for loan in breached.iter_rows(named=True):
        if len(rows) >= MAX_ROWS:  # a book in a crash: the riskiest are shown, the rest counted
            break
        found = alerts.filter(pl.col("loan_id") == loan["loan_id"])
        if found.is_empty():  # breached with no alert recorded (e.g. alerts older than the record): still listed
            rows.append([text(loan["loan_id"]), Cell("", badge=loan["status"], numeric=False), *[text(None)] * 5])
        rows += [_breach_row(a) for a in found.iter_rows(named=True)]
    shown, omitted = rows[:MAX_ROWS], max(0, total - MAX_ROWS)
    columns = ["Loan", "Level", "Alert date", "Alert", "Subject", "Cure deadline", "Delivered"]
    return Table("Loans at margin call or liquidation, with their latest alerts", columns, shown, omitted)


def _breach_row(alert: dict[str, Any]) -> list[Cell]:
    left = alert["sessions_left"]
    notes = () if left is None else (f"overdue by {_sessions(-left)}" if left < 0 else f"{_sessions(left)} left",)
    return [
        text(alert["loan_id"]),
        Cell("", badge=alert["level"], numeric=False),
        text(alert["as_of_date"]),
        text(label(alert["kind"])),
        text(alert["subject"]),
        Cell(DASH if alert["cure_deadline"] is None else str(alert["cure_deadline"]), notes=notes, numeric=False),
        text(f"{alert['delivered']} of {alert['channels']} channels" if alert["channels"] else "no channel"),
    ]


def _sessions(count: int) -> str:
    return "1 session" if count == 1 else f"{count} sessions"


def pending_table(pending: pl.DataFrame) -> Table:
    """Return every alert delivery still pending, newest first."""
    shown, omitted = _limit([_pending_row(p) for p in pending.iter_rows(named=True)])
    columns = ["Loan", "Alert date", "Alert", "Level", "Subject", "Channel", "Attempts", "Last attempt"]
    return Table("Alerts not yet acknowledged by a channel", columns, shown, omitted)


def _pending_row(p: dict[str, Any]) -> list[Cell]:
    level = p["level"]  # operational alerts have levels such as `held_back`, not a status
    return [
        text(p["loan_id"]),
        text(p["as_of_date"]),
        text(label(p["kind"])),
        Cell("", badge=level, numeric=False) if level in STATUSES else text(label(level)),
        text(p["subject"]),
        text(p["channel"]),
        Cell(str(p["attempts"])),
        text(_when(p["last_attempt_at"])),
    ]


def failed_checks_table(failed: pl.DataFrame) -> Table:
    """Return the latest run's failed data-quality checks, blocking ones first."""
    rows = [
        [
            text(f["suite"]),
            text(f["check_name"]),
            text(f["severity"]),
            Cell(
                DASH if f["unexpected_count"] is None else f"{f['unexpected_count']:,} of {f['element_count'] or 0:,}"
            ),
            text(f["observed_value"]),
        ]
        for f in failed.iter_rows(named=True)
    ]
    shown, omitted = _limit(rows)
    columns = ["Suite", "Check", "Severity", "Unexpected rows", "Observed"]
    return Table("Failed data-quality checks of the latest run", columns, shown, omitted)


def _when(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M %Z").strip()
