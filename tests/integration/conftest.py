"""Fixtures for the runner tests (``runner_*``): a fresh runner set and attempt contexts
whose log sink records every line."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ordo.engine import open_store
from ordo.model import Task
from ordo.runners import RunnerSet, make_runners
from ordo.runners.base import RunContext
from ordo.store import Store


class RunnerLogs(list[tuple[str, str]]):
    """A log sink that keeps ``(stream, line)`` pairs, and can call back on each line."""

    def __init__(self) -> None:
        super().__init__()
        self.on_line: Callable[[str, str], None] | None = None

    def __call__(self, stream: str, line: str) -> None:
        self.append((stream, line))
        if self.on_line is not None:
            self.on_line(stream, line)

    def lines(self, stream: str) -> list[str]:
        return [line for s, line in self if s == stream]


RunnerCtx = Callable[..., RunContext]


@pytest.fixture
def runner_set() -> Iterator[RunnerSet]:
    runners = make_runners(2)
    yield runners
    runners.close()


@pytest.fixture
def runner_ctx() -> RunnerCtx:
    """``runner_ctx(base_dir, fields, with_=, env=, timeout=, attempt=)``."""

    def make(
        base: Path,
        fields: dict[str, Any],
        *,
        with_: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        attempt: int = 1,
    ) -> RunContext:
        return RunContext(
            execution_id=11,
            task_run_id=22,
            attempt_id=33,
            attempt_number=attempt,
            task=Task(id="step", type="x"),
            fields=fields,
            with_=with_ or {},
            env=env or {},
            base_dir=str(base),
            log=RunnerLogs(),
            timeout=timeout,
            kill_grace=0.5,
        )

    return make


class Handler(BaseHTTPRequestHandler):
    release: threading.Event  # set by the fixture: lets /slow answer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        kind = self.headers.get("Content-Type", "")
        got = json.loads(body) if kind == "application/json" else body.decode()
        reply = {"got": got, "path": self.path, "token": self.headers.get("X-Token")}
        self._reply(201, "application/json", json.dumps(reply).encode())

    def do_GET(self) -> None:
        if self.path == "/fail":
            self._reply(500, "text/plain", b"broken")
        elif self.path == "/big":
            self._reply(200, "text/plain", b"x" * (1024 * 1024 + 10))
        elif self.path == "/slow":
            self.release.wait(10)
            self._reply(200, "text/plain", b"late")
        else:
            self._reply(200, "text/plain; charset=utf-8", "héllo".encode())

    def _reply(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def runner_http_server() -> Iterator[str]:
    release = threading.Event()
    handler = type("BoundHandler", (Handler,), {"release": release})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on each backend: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return str(tmp_path / "ordo.db")


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    """An open store on each backend (the ``db`` fixture's)."""
    s = open_store(db)
    yield s
    s.close()


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[Message]]]:
    """A real SMTP server (aiosmtpd) on a free port, and the messages it received."""
    from aiosmtpd.controller import Controller

    got: list[Message] = []
    lock = threading.Lock()

    class Keep:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with lock:
                got.append(message_from_bytes(envelope.content))
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, got
    finally:
        controller.stop()
