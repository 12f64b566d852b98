"""The http runner against a real local HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ordo.model import State
from ordo.runners import RunnerSet
from ordo.runners.base import RunContext

RunnerCtx = Callable[..., RunContext]


def test_json_request_and_response(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path, runner_http_server: str
) -> None:
    url = f"{runner_http_server}/items"
    fields = {
        "method": "post",
        "url": url,
        "json": {"a": 1},
        "params": {"q": "x y"},
        "headers": {"X-Token": "t1"},
    }
    ctx = runner_ctx(tmp_path, fields)
    outcome = runner_set.get("http").run(ctx)
    assert outcome.ok, outcome.error
    assert outcome.outputs["status"] == 201
    assert outcome.outputs["json"] == {"got": {"a": 1}, "path": "/items?q=x+y", "token": "t1"}
    assert outcome.outputs["headers"]["content-type"] == "application/json"
    log: Any = ctx.log
    assert list(log) == [("stdout", f"POST {url}"), ("stdout", "201 Created")]


def test_text_body_and_caps(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path, runner_http_server: str
) -> None:
    http = runner_set.get("http")
    text = http.run(runner_ctx(tmp_path, {"url": f"{runner_http_server}/hello"}))
    assert text.outputs["text"] == "héllo" and "json" not in text.outputs
    posted = http.run(
        runner_ctx(tmp_path, {"method": "POST", "url": runner_http_server, "body": "raw"})
    )
    assert posted.outputs["json"]["got"] == "raw"
    big = http.run(runner_ctx(tmp_path, {"url": f"{runner_http_server}/big"}))
    assert big.outputs["text"].startswith("x" * 1024 * 1024 + "\n[truncated: 1048586")


def test_unexpected_status_fails_with_reason_status(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path, runner_http_server: str
) -> None:
    http = runner_set.get("http")
    url = f"{runner_http_server}/fail"
    failed = http.run(runner_ctx(tmp_path, {"url": url}))
    assert (failed.state, failed.reason, failed.error) == (
        State.FAILED,
        "status",
        "expected status 2xx; got 500",
    )
    assert failed.outputs["text"] == "broken"
    listed = http.run(runner_ctx(tmp_path, {"url": url, "expect_status": [200, 204]}))
    assert listed.error == "expected status 200, 204; got 500"
    assert http.run(runner_ctx(tmp_path, {"url": url, "expect_status": [500]})).ok
    assert http.run(runner_ctx(tmp_path, {"url": url, "expect_status": 500})).ok


def test_unreachable_url_is_named(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path
) -> None:
    outcome = runner_set.get("http").run(runner_ctx(tmp_path, {"url": "http://127.0.0.1:9/x"}))
    assert (outcome.state, outcome.reason, outcome.error) == (
        State.FAILED,
        "error",
        "cannot connect to http://127.0.0.1:9/x: Connection refused",
    )


def test_timeout_and_cancel(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path, runner_http_server: str
) -> None:
    http = runner_set.get("http")
    url = f"{runner_http_server}/slow"
    timed = http.run(runner_ctx(tmp_path, {"url": url}, timeout=0.3))
    assert (timed.state, timed.reason, timed.error) == (
        State.FAILED,
        "timeout",
        f"timed out after 0.3s: GET {url}",
    )
    ctx = runner_ctx(tmp_path, {"url": url})
    timer = threading.Timer(0.2, ctx.cancel.set)
    timer.start()
    killed = http.run(ctx)
    timer.join()
    assert (killed.state, killed.reason) == (State.KILLED, "killed")


def test_https_verifies_certificates_and_a_plain_http_url_needs_no_tls_context(
    runner_set: RunnerSet, runner_ctx: RunnerCtx, tmp_path: Path, runner_http_server: str
) -> None:
    import http.server
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    runner: Any = runner_set.get("http")
    plain = runner.run(runner_ctx(tmp_path, {"url": f"{runner_http_server}/hello"}))
    assert plain.ok and runner._tls is None  # the CA bundle is loaded for https only
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/"
        refused = runner.run(runner_ctx(tmp_path, {"url": url}))
    finally:
        server.shutdown()
        server.server_close()
    assert refused.state is State.FAILED
    assert "CERTIFICATE_VERIFY_FAILED" in (refused.error or "")
    assert runner._tls is not None
