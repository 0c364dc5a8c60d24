"""Real local servers for notification tests: a JSON webhook and an SMTP server, on 127.0.0.1 only."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest

SMTP_USER, SMTP_PASSWORD = "risk-bot", "canary-smtp-7f3a9c"


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Return the rows of a query on a warehouse file, opened read-only."""
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


class Webhook:
    """A JSON webhook that can fail or hang on demand and records what it acknowledged."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.requests = 0
        self.fail_with: int | None = None
        self.hang_seconds = 0.0
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook._lock:
                    hook.requests += 1
                    fail, hang = hook.fail_with, hook.hang_seconds
                if hang:
                    time.sleep(hang)
                if fail:
                    self.send_response(fail)
                    self.end_headers()
                    return
                try:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"ok")
                    self.wfile.flush()
                except OSError:  # the sender gave up: not acknowledged
                    return
                if not hang:
                    with hook._lock:
                        hook.received.append(json.loads(body))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, extra: str = "") -> str:
        return f"json://127.0.0.1:{self.port}/hooks/risk?rto=1&cto=1{extra}"

    def keys(self) -> list[str]:
        """Return the alert key of every acknowledged message, in arrival order."""
        return [
            line.split(": ", 1)[1]
            for m in self.received
            for line in m["message"].splitlines()
            if line.startswith("Alert key: ")
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


class Mailbox:
    """An SMTP server with login, collecting the messages it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[EmailMessage] = []
        box = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                box.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            return AuthResult(success=data.login == SMTP_USER.encode() and data.password == SMTP_PASSWORD.encode())

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate, auth_require_tls=False
        )
        self.controller.start()

    def url(self) -> str:
        return (
            f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{self.port}"
            "?from=marginwatch@example.com&to=treasury@example.com&mode=insecure"
        )


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.controller.stop()


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own folder, so relative paths (the demo alert file) never land in the repo."""
    monkeypatch.chdir(tmp_path)
