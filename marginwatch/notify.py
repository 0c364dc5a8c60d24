"""Deliver alerts to channels: Apprise URLs (Slack, Teams, email, JSON webhooks...) or a local file."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from marginwatch.config import Channel, channel_url
from marginwatch.messages import html_body, subject, text_body

# Apprise's own log lines reach users only through our scrubbed delivery errors.
logging.getLogger("apprise").addHandler(logging.NullHandler())
logging.getLogger("apprise").propagate = False

BACKOFF_SECONDS = (0.5, 1.5)  # between the attempts of one run; later runs retry what stays pending
EMAIL_SCHEMES = ("mailto", "mailtos")


@dataclass(frozen=True)
class Delivery:
    """The outcome of delivering one alert to one channel."""

    alert_key: str
    channel: str
    error: str | None  # None when the channel acknowledged


def scrub(message: str, secrets: list[str]) -> str:
    """Return `message` with every secret (and its URL-decoded form) replaced by ***."""
    forms = {f for s in secrets if s and len(s) >= 3 for f in (s, unquote(s), quote(s, safe=""), quote(s))}
    for form in sorted(forms, key=len, reverse=True):
        message = message.replace(form, "***")
    return message


def url_secrets(url: str) -> list[str]:
    """Return the parts of an Apprise URL that must never be shown: all of it, credentials, tokens.

    Many Apprise schemes carry tokens as the host or path segments (`slack://TokenA/TokenB/...`),
    so those count as secrets too.
    """
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0]  # as written: hostname is lowercased
    found = [url, parts.password or "", parts.username or "", parts.query, parts.path, host]
    found += [segment for segment in parts.path.split("/") if len(segment) >= 6]
    found += re.findall(r"(?:pass|password|token|key|secret|webhook)=([^&]+)", parts.query, re.IGNORECASE)
    return [f for f in found if f and f not in ("/",)]


class Notifier:
    """Sends rendered alerts to the book's channels, one channel object per channel."""

    def __init__(self, channels: list[Channel], report: Path | None = None) -> None:
        self.channels = {c.name: c for c in channels}
        self.report = report  # attached to email from channels that ask for it
        self._apprise: dict[str, Any] = {}
        self._secrets: list[str] = []

    def _target(self, channel: Channel) -> Any:
        if channel.name not in self._apprise:
            import apprise

            url = channel_url(channel)
            self._secrets += url_secrets(url)
            target = apprise.Apprise()
            if not target.add(url):
                raise ValueError(f"channel {channel.name!r}: {channel.url_env} does not hold a valid Apprise URL")
            self._apprise[channel.name] = (target, urlsplit(url).scheme in EMAIL_SCHEMES)
        return self._apprise[channel.name]

    def send(self, alert: dict[str, Any], channel_name: str) -> Delivery:
        """Deliver one alert, retrying with backoff; the error never contains a secret."""
        channel = self.channels.get(channel_name)
        if channel is None:
            return Delivery(alert["alert_key"], channel_name, "channel no longer in the config")
        error: str | None = "not attempted"
        for attempt in range(len(BACKOFF_SECONDS) + 1):
            if attempt:
                time.sleep(BACKOFF_SECONDS[attempt - 1])
            error = self._attempt(alert, channel)
            if error is None:
                break
        return Delivery(alert["alert_key"], channel_name, error)

    def _attempt(self, alert: dict[str, Any], channel: Channel) -> str | None:
        try:
            if channel.file is not None:
                channel.file.parent.mkdir(parents=True, exist_ok=True)
                with channel.file.open("a", encoding="utf-8") as handle:
                    handle.write(f"{subject(alert)}\n{text_body(alert)}\n\n")
                return None
            return self._send_apprise(alert, channel)
        except Exception as exc:  # a channel failure is recorded, never raised past the run
            return scrub(f"{type(exc).__name__}: {exc}", self._secrets)

    def _send_apprise(self, alert: dict[str, Any], channel: Channel) -> str | None:
        import apprise

        target, is_email = self._target(channel)
        body, body_format = (
            (html_body(alert), apprise.NotifyFormat.HTML) if is_email else (text_body(alert), apprise.NotifyFormat.TEXT)
        )
        attach = str(self.report) if is_email and channel.attach_report and self.report is not None else None
        with apprise.LogCapture(level=logging.WARNING) as captured:
            ok = target.notify(title=subject(alert), body=body, body_format=body_format, attach=attach)
        if ok:
            return None
        reasons = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
        return scrub(f"not acknowledged: {reasons[-1] if reasons else 'no reason given'}", self._secrets)
