"""A real ``ordo server`` process on a free port of 127.0.0.1, for the server tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from support import patient

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_ordo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ordo.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Server:
    """A running server: ``url``, ``token`` (read-write), ``reader`` (read-only) and an
    HTTP client with the token."""

    def __init__(self, db: str, env: dict[str, str], folder: Path, *args: str) -> None:
        self.db = db
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = self.cli("tokens", "create", "--name", f"writer-{self.port}").stdout.strip()
        self.reader = self.cli(
            "tokens", "create", "--name", f"reader-{self.port}", "--read-only"
        ).stdout.strip()
        self.log = folder / f"server-{self.port}.log"
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ordo.cli.main",
                    "--db",
                    db,
                    "server",
                    "--port",
                    str(self.port),
                    *args,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        try:
            self.wait_ready()
        except BaseException:  # a server that never became ready is not left running
            self.stop()
            raise

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_ordo(self.env, "--db", self.db, *args)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for ``/health``: ``timeout`` seconds on an idle machine, more under load
        (a server's start imports FastAPI and opens the store, slow on a busy runner)."""
        deadline = time.monotonic() + patient(timeout)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready: {self.log.read_text()}")

    def add_flow(self, text: str) -> dict[str, Any]:
        response = self.http.post(
            "/api/flows", content=text, headers={"Content-Type": "application/x-yaml"}
        )
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    def wait_state(self, execution_id: int, *states: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + patient(timeout)
        while True:
            doc: dict[str, Any] = self.http.get(f"/api/executions/{execution_id}").json()
            if doc["state"] in states or time.monotonic() > deadline:
                assert doc["state"] in states, doc
                return doc
            time.sleep(0.05)

    def stop(self) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return int(self.process.returncode)


@contextmanager
def running_server(db: str, env: dict[str, str], folder: Path, *args: str) -> Iterator[Server]:
    server = Server(db, env, folder, *args)
    try:
        yield server
    finally:
        server.stop()


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ORDO_HOME"] = str(tmp_path / "home")
    env.pop("ORDO_DB", None)
    env.pop("ORDO_SERVER", None)
    env["PYTHONPATH"] = str(ROOT / "src")
    env.update(extra)
    return env


def sign_in(client: httpx.Client, token: str, next_url: str = "/") -> httpx.Response:
    """Sign in to the web UI as a browser does: the form first (its CSRF token and the
    login cookie), then the token."""
    form = client.get("/login")
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return client.post("/login", data={"token": token, "next": next_url, "csrf": csrf})


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server that keeps the JSON body of every POST (answered 200; a POST
    to ``/broken`` is answered 500 and not kept): its URL and what it got."""
    got: list[dict[str, Any]] = []

    class Keep(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = 500 if self.path == "/broken" else 200
            if status == 200:
                got.append(body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Keep)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", got
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
