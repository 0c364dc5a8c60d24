"""Alert messages (subject, text and HTML bodies), secret scrubbing, and the file channel of the Notifier."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from marginwatch import notify
from marginwatch.config import Channel
from marginwatch.messages import html_body, lines, render, subject, text_body
from marginwatch.notify import Delivery, Notifier, scrub, url_secrets
from transforms.alerts import ALERT_SCHEMA

D = dt.date
LOAN = "sbg-arm-usd"  # the shipped book's loan id


def alert(kind: str = "reminder", level: str = "margin_call", **overrides: Any) -> dict[str, Any]:
    """One alert record as the warehouse holds it (every ALERT_SCHEMA column), a margin-call reminder by default."""
    breach = kind in ("level", "reminder", "recovery") and level in ("margin_call", "liquidation")
    record: dict[str, Any] = {
        "alert_key": f"{LOAN}/2026-04-02/{kind}/{level}",
        "loan_id": LOAN,
        "as_of_date": D(2026, 4, 2),
        "kind": kind,
        "level": level,
        "previous_level": {
            "level": "ok" if level == "warning" else "warning",
            "recovery": "liquidation",
            "reminder": level,
        }.get(kind),
        "price_date": D(2026, 4, 1),
        "currency": "USD",
        "ltv": 0.523,
        "price": 123.45,
        "margin_call_price": 129.13,
        "liquidation_price": 99.34,
        "distance_to_margin_call": -0.046,
        "cure_cash": 1_234_567.0,
        "cure_shares": 10_000.0,
        "episode_start": D(2026, 4, 1) if breach else None,
        "cure_deadline": D(2026, 4, 6) if breach else None,
        "sessions_left": 1 if breach else None,
        "is_unconfirmed": False,
        "detail": None,
        "source": "yfinance",
    }
    if kind == "data_quality":
        record.update(detail="ARM close moved 55% in one session; rows held back")
    if kind == "stale_source":
        record.update(detail="no new price for 4 sessions (last price 2026-03-27)", price_date=D(2026, 3, 27))
    record.update(overrides)
    assert set(record) == set(ALERT_SCHEMA)
    return record


EVERY_KIND = [
    ("level", "warning"),
    ("level", "margin_call"),
    ("level", "liquidation"),
    ("reminder", "margin_call"),
    ("reminder", "liquidation"),
    ("recovery", "margin_call"),
    ("recovery", "warning"),
    ("recovery", "ok"),
    ("data_quality", "held_back"),
    ("stale_source", "stale"),
]


def _subject_cases() -> list[Any]:
    cases = []
    for kind, level in EVERY_KIND:
        for unconfirmed in (False, True):
            marks: list[pytest.MarkDecorator] = []
            cases.append(pytest.param(kind, level, unconfirmed, marks=marks, id=f"{kind}-{level}-{unconfirmed}"))
    return cases


# ---------------------------------------------------------------- subject


@pytest.mark.parametrize(("kind", "level", "unconfirmed"), _subject_cases())
def test_subject_is_one_short_line_naming_the_loan_and_the_level(kind: str, level: str, unconfirmed: bool) -> None:
    text = subject(alert(kind, level, is_unconfirmed=unconfirmed))
    assert "\n" not in text and "\r" not in text
    assert len(text) < 80, (len(text), text)
    assert LOAN in text
    assert level.replace("_", " ").lower() in text.lower()
    assert text.startswith("UNCONFIRMED ") == unconfirmed


@pytest.mark.parametrize(("kind", "level"), EVERY_KIND)
def test_subject_starts_with_unconfirmed_when_the_price_is_unconfirmed(kind: str, level: str) -> None:
    assert subject(alert(kind, level, is_unconfirmed=True)).startswith("UNCONFIRMED ")
    assert not subject(alert(kind, level, is_unconfirmed=False)).startswith("UNCONFIRMED")


def test_subject_of_each_kind_reads_as_expected() -> None:
    assert subject(alert("level", "margin_call")) == "MARGIN CALL sbg-arm-usd: LTV 52.3%"
    assert subject(alert("reminder", "liquidation")) == "LIQUIDATION sbg-arm-usd: cure by 2026-04-06 (1 left)"
    assert subject(alert("recovery", "warning")) == "RECOVERED to warning sbg-arm-usd: LTV 52.3%"
    assert subject(alert("data_quality", "held_back")) == "DATA HELD BACK sbg-arm-usd on 2026-04-02"
    assert subject(alert("stale_source", "stale")) == "STALE PRICE sbg-arm-usd: last price 2026-03-27"


# ---------------------------------------------------------------- sessions left wording


@pytest.mark.parametrize(
    ("left", "wording", "short"),
    [
        (2, "(2 sessions left)", "(2 left)"),
        (1, "(1 session left)", "(1 left)"),
        (0, "(0 sessions left)", "(0 left)"),
        (-1, "(overdue by 1 session)", "(overdue 1)"),
        (-3, "(overdue by 3 sessions)", "(overdue 3)"),
    ],
)
def test_sessions_left_wording_in_subject_and_body(left: int, wording: str, short: str) -> None:
    record = alert("reminder", "margin_call", sessions_left=left)
    assert subject(record).endswith(f"cure by 2026-04-06 {short}")
    assert f"Cure deadline: 2026-04-06 {wording[:-1]}; breach since 2026-04-01)" in text_body(record)


def test_one_session_is_singular_and_two_are_plural() -> None:
    assert "1 session left" in text_body(alert(sessions_left=1))
    assert "1 sessions" not in text_body(alert(sessions_left=1))
    assert "2 sessions left" in text_body(alert(sessions_left=2))
    assert "overdue by 1 session;" in text_body(alert(sessions_left=-1))


# ---------------------------------------------------------------- text body


def test_text_body_of_a_reminder_holds_every_figure_needed_to_act() -> None:
    body = text_body(alert("reminder", "margin_call"))
    for expected in (
        f"Loan: {LOAN} (USD)",
        "Alert: reminder: margin_call",
        "As of: 2026-04-02 (price of 2026-04-01)",
        "LTV: 52.3%",
        "Previous level: margin_call",
        "Price: 123.45",
        "Margin-call price: 129.13",
        "Liquidation price: 99.34",
        "Distance to margin call: -4.6%",
        "Cure cash: 1,234,567 USD",
        "Cure shares: 10,000 shares",
        "Cure deadline: 2026-04-06 (1 session left; breach since 2026-04-01)",
        f"Alert key: {LOAN}/2026-04-02/reminder/margin_call",
    ):
        assert expected in body.splitlines(), (expected, body)
    assert "SYNTHETIC" not in body
    assert "UNCONFIRMED" not in body


def test_text_body_shows_cure_cash_in_the_loan_currency() -> None:
    body = text_body(alert("level", "margin_call", currency="JPY", cure_cash=150_000_000.0))
    assert "Cure cash: 150,000,000 JPY" in body
    assert f"Loan: {LOAN} (JPY)" in body


def test_text_body_of_a_warning_level_alert_has_no_cure_deadline() -> None:
    body = text_body(alert("level", "warning", cure_cash=0.0, cure_shares=0.0))
    assert "Cure deadline" not in body
    assert "Alert: level: warning" in body
    assert "Previous level: ok" in body.splitlines()


def test_text_body_flags_synthetic_data() -> None:
    assert "Note: SYNTHETIC DATA, not market prices" in text_body(alert(source="synthetic")).splitlines()
    assert "SYNTHETIC" not in text_body(alert(source="yfinance"))


def test_text_body_flags_an_unconfirmed_price() -> None:
    assert "UNCONFIRMED" in text_body(alert(is_unconfirmed=True))


def test_text_body_of_operational_alerts_has_the_detail() -> None:
    held = text_body(alert("data_quality", "held_back"))
    assert "Detail: ARM close moved 55% in one session; rows held back" in held
    assert "As of: 2026-04-02" in held
    assert f"Alert key: {LOAN}/2026-04-02/data_quality/held_back" in held
    stale = text_body(alert("stale_source", "stale", source="synthetic"))
    assert "Detail: no new price for 4 sessions (last price 2026-03-27)" in stale
    assert "SYNTHETIC" in stale


def test_missing_figures_read_n_a_rather_than_failing() -> None:
    body = text_body(alert("level", "margin_call", ltv=None, price=None, cure_cash=None, distance_to_margin_call=None))
    assert "LTV: n/a" in body and "Price: n/a" in body and "Cure cash: n/a" in body
    assert "Distance to margin call: n/a" in body


def test_render_is_subject_and_text_body() -> None:
    record = alert("level", "liquidation")
    assert render(record) == (subject(record), text_body(record))
    assert text_body(record) == "\n".join(f"{label}: {value}" for label, value in lines(record))


# ---------------------------------------------------------------- HTML body


def test_html_body_escapes_values_and_is_a_table() -> None:
    record = alert("level", "margin_call", loan_id="<b>x</b>&co", alert_key="<b>x</b>&co/2026-04-02/level/margin_call")
    body = html_body(record)
    assert "<table>" in body and "</table>" in body
    assert "<tr><th align='left'>Loan</th><td>&lt;b&gt;x&lt;/b&gt;&amp;co (USD)</td></tr>" in body
    assert "<b>x</b>" not in body
    assert "&co" not in body.replace("&amp;co", "")


def test_html_body_escapes_the_detail_of_operational_alerts() -> None:
    body = html_body(alert("data_quality", "held_back", detail="<script>alert(1)</script>"))
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_html_body_has_the_same_lines_as_the_text_body() -> None:
    record = alert("reminder", "liquidation", source="synthetic")
    body = html_body(record)
    for label, _value in lines(record):
        assert f"<th align='left'>{label}</th>" in body
    assert "1,234,567 USD" in body and "2026-04-06 (1 session left; breach since 2026-04-01)" in body


# ---------------------------------------------------------------- scrub and url_secrets

URL = "json://alice:p%40ss%2Fw0rd@hooks.example.com/v1/abc?token=tok123secret&x=1"


def test_url_secrets_returns_the_url_its_password_and_token_query_values() -> None:
    secrets = url_secrets(URL)
    assert URL in secrets
    assert "p%40ss%2Fw0rd" in secrets
    assert "tok123secret" in secrets
    assert "alice" in secrets


def test_url_secrets_finds_every_token_like_query_value() -> None:
    secrets = url_secrets("json://hooks.example.com/h?apikey=K3y123&password=Pw456&secret=S789&webhook=W000&user=bob")
    assert {"K3y123", "Pw456", "S789", "W000"} <= set(secrets)


def test_url_secrets_of_a_url_without_credentials_are_the_url_and_its_host() -> None:
    assert url_secrets("json://hooks.example.com") == ["json://hooks.example.com", "hooks.example.com"]


def test_url_secrets_treat_token_path_segments_and_host_as_secret() -> None:
    secrets = url_secrets("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ")
    assert {"T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"} <= set(secrets)


def test_scrub_removes_the_url_its_password_and_their_url_decoded_forms() -> None:
    message = (
        f"ConnectionError: posting to {URL} failed; "
        "decoded url json://alice:p@ss/w0rd@hooks.example.com/v1/abc; "
        "password p%40ss%2Fw0rd or p@ss/w0rd; token tok123secret"
    )
    scrubbed = scrub(message, url_secrets(URL))
    for secret in ("p%40ss%2Fw0rd", "p@ss/w0rd", "tok123secret", URL):
        assert secret not in scrubbed, (secret, scrubbed)
    assert scrubbed.startswith("ConnectionError: posting to *** failed;")
    assert scrubbed.count("***") >= 5


def test_scrub_removes_the_url_encoded_form_of_a_raw_password() -> None:
    secrets = url_secrets("json://alice:s3cr3t!pw@hooks.example.com/h")
    assert "s3cr3t!pw" in secrets
    assert "s3cr3t%21pw" not in scrub("auth failed for alice:s3cr3t%21pw", secrets)


def test_scrub_leaves_messages_without_secrets_and_ignores_tiny_or_empty_secrets() -> None:
    assert scrub("HTTP 500 from server", ["", "ab", "tok123secret"]) == "HTTP 500 from server"
    assert scrub("token tok123secret", []) == "token tok123secret"


# ---------------------------------------------------------------- Notifier with a file channel


def test_file_channel_appends_subject_and_body_for_each_send(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "alerts.log"
    notifier = Notifier([Channel(name="desk-file", file=target, min_level="margin_call")])
    first, second = alert("level", "margin_call"), alert("reminder", "margin_call", as_of_date=D(2026, 4, 6))
    assert notifier.send(first, "desk-file") == Delivery(first["alert_key"], "desk-file", None)
    assert notifier.send(second, "desk-file") == Delivery(second["alert_key"], "desk-file", None)
    assert target.read_text(encoding="utf-8") == (
        f"{subject(first)}\n{text_body(first)}\n\n{subject(second)}\n{text_body(second)}\n\n"
    )


def test_sending_to_a_channel_not_in_the_config_returns_an_error_delivery(tmp_path: Path) -> None:
    target = tmp_path / "alerts.log"
    notifier = Notifier([Channel(name="desk-file", file=target)])
    record = alert()
    outcome = notifier.send(record, "removed-channel")
    assert outcome.alert_key == record["alert_key"]
    assert outcome.channel == "removed-channel"
    assert outcome.error
    assert not target.exists()


def test_a_failing_file_channel_returns_an_error_delivery_without_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "BACKOFF_SECONDS", (0.0, 0.0))
    directory = tmp_path / "is-a-directory"
    directory.mkdir()
    outcome = Notifier([Channel(name="broken", file=directory)]).send(alert(), "broken")
    assert outcome.channel == "broken"
    assert outcome.error is not None and outcome.error.startswith(("IsADirectoryError", "PermissionError"))
