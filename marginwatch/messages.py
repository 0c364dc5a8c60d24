"""Alert messages: a subject readable on a phone, a plain-text body and a compact HTML body."""

from __future__ import annotations

import html
from typing import Any

TITLES = {"warning": "WARNING", "margin_call": "MARGIN CALL", "liquidation": "LIQUIDATION", "ok": "OK"}
DETAIL_KINDS = ("data_quality", "stale_source", "run_failed")  # kinds that carry a detail, not figures
UNCONFIRMED_NOTE = "UNCONFIRMED: the price moved beyond the bound in one session; confirm before acting"
SYNTHETIC_NOTE = "SYNTHETIC DATA, not market prices"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _money(value: float | None, currency: str | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f} {currency}" if currency else f"{value:,.2f}"


def subject(alert: dict[str, Any]) -> str:
    """Return a one-line subject of at most about 70 characters."""
    loan, kind, level = alert["loan_id"], alert["kind"], alert["level"]
    flag = "UNCONFIRMED " if alert.get("is_unconfirmed") else ""
    if kind == "level":
        text = f"{TITLES[level]} {loan}: LTV {_pct(alert['ltv'])}"
    elif kind == "reminder":
        text = f"{TITLES[level]} {loan}: cure by {alert['cure_deadline']} ({_short_left(alert)})"
    elif kind == "recovery":
        text = f"RECOVERED to {level.replace('_', ' ')} {loan}: LTV {_pct(alert['ltv'])}"
    elif kind == "data_quality":
        text = f"DATA HELD BACK {loan} on {alert['as_of_date']}"
    elif kind == "run_failed":
        text = f"RUN FAILED marginwatch {level} for {alert['as_of_date']}"
    else:
        text = f"STALE PRICE {loan}: last price {alert['price_date']}"
    return flag + text


def _short_left(alert: dict[str, Any]) -> str:
    left = alert.get("sessions_left")
    if left is None:
        return "no deadline"
    return f"overdue {-left}" if left < 0 else f"{left} left"


def _left(alert: dict[str, Any]) -> str:
    left = alert.get("sessions_left")
    if left is None:
        return "no deadline"
    if left < 0:
        return f"overdue by {_sessions(-left)}"
    return f"{_sessions(left)} left"


def _sessions(count: int) -> str:
    return f"{count} session" if count == 1 else f"{count} sessions"


def lines(alert: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the (label, value) lines both bodies show."""
    currency = alert.get("currency")
    rows = [("Loan", f"{alert['loan_id']} ({currency})"), ("Alert", f"{alert['kind']}: {alert['level']}")]
    if alert["kind"] in DETAIL_KINDS:
        rows.append(("As of", str(alert["as_of_date"])))
        rows.append(("Detail", str(alert.get("detail") or "")))
    else:
        rows += [
            ("As of", f"{alert['as_of_date']} (price of {alert['price_date']})"),
            ("LTV", _pct(alert["ltv"])),
            ("Previous level", str(alert.get("previous_level") or "")),
            ("Price", _money(alert.get("price"))),
            ("Margin-call price", _money(alert.get("margin_call_price"))),
            ("Liquidation price", _money(alert.get("liquidation_price"))),
            ("Distance to margin call", _pct(alert.get("distance_to_margin_call"))),
            ("Cure cash", _money(alert.get("cure_cash"), currency)),
            ("Cure shares", _money(alert.get("cure_shares"), "shares")),
        ]
        if alert.get("cure_deadline"):
            rows.append(
                ("Cure deadline", f"{alert['cure_deadline']} ({_left(alert)}; breach since {alert['episode_start']})")
            )
    if alert.get("is_unconfirmed"):
        rows.append(("Note", UNCONFIRMED_NOTE))
    if alert.get("source") == "synthetic":
        rows.append(("Note", SYNTHETIC_NOTE))
    rows.append(("Alert key", str(alert["alert_key"])))
    return rows


def text_body(alert: dict[str, Any]) -> str:
    """Return the plain-text body."""
    return "\n".join(f"{label}: {value}" for label, value in lines(alert))


def html_body(alert: dict[str, Any]) -> str:
    """Return a compact HTML body (a two-column table) for email."""
    cells = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>\n"
        for label, value in lines(alert)
    )
    return f"<p><b>{html.escape(subject(alert))}</b></p>\n<table>\n{cells}</table>"


def render(alert: dict[str, Any]) -> tuple[str, str]:
    """Return (subject, plain-text body) for the alert record."""
    return subject(alert), text_body(alert)
