"""``http`` tasks through httpx (imported when the first http task runs)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import sys
from types import ModuleType
from typing import Any

from ordo.model import Outcome, State
from ordo.runners.base import RunContext
from ordo.runners.watch import Watch, timeout_error

MAX_TEXT = 1024 * 1024
DEFAULT_TIMEOUT = 30.0


def load_httpx() -> ModuleType:
    """httpx, imported without its command-line client. ``import httpx`` also imports
    ``httpx._main`` (rich, click and pygments: most of the 0.4-0.5 s the first http task
    of a process took) whenever those are installed, as they are beside ordo. A None in
    ``sys.modules`` makes that one import fail, as httpx expects when they are missing
    (it then defines a stub ``main``); the entry is removed right after."""
    if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
        try:
            import httpx
        finally:
            del sys.modules["httpx._main"]
    import httpx

    return httpx


class HttpRunner:
    """Sends one request: ``method`` (GET), ``url``, ``headers``, ``params``, ``json`` or
    ``body``. Outputs ``status``, ``headers`` and ``json`` (a JSON response) or ``text``
    (capped at 1 MiB). A status outside ``expect_status`` (a code or a list; default: any
    2xx) is FAILED
    with reason ``status``; the request times out after ``ctx.timeout`` (default 30 s)."""

    def __init__(self) -> None:
        self._httpx = load_httpx()
        self._tls: ssl.SSLContext | None = None
        # For http:// URLs: a context that trusts nothing. Building the real one (loading
        # the CA bundle, ~30 ms) waits for the first https:// URL; if TLS were ever
        # needed for a plain http URL (a proxy), this fails closed, never unverified.
        self._no_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    def _verify(self, url: str) -> ssl.SSLContext:
        """The TLS context for ``url``: made once per runner, not per request. (A client
        per request keeps cookies and connections of one task away from the next.)"""
        if not url[:8].lower().startswith("https:"):
            return self._no_tls
        if self._tls is None:
            self._tls = self._httpx.create_ssl_context()
        return self._tls

    def run(self, ctx: RunContext) -> Outcome:
        f = ctx.fields
        method = str(f.get("method", "GET")).upper()
        url = str(f["url"])
        ctx.log("stdout", f"{method} {url}")
        client = self._httpx.Client(
            timeout=ctx.timeout or DEFAULT_TIMEOUT, verify=self._verify(url)
        )
        sockets = _Sockets()
        with client, Watch(ctx, sockets.shut) as watch:
            try:
                response = client.request(
                    method,
                    url,
                    headers=f.get("headers"),
                    params=f.get("params"),
                    json=f.get("json"),
                    content=_body(f.get("body")),
                    extensions={"trace": sockets.trace},
                )
            except self._httpx.HTTPError as exc:
                stopped = watch.outcome()
                if stopped is not None and stopped.reason != "timeout":
                    return stopped  # cancelled; a timeout (ours or httpx's) names the URL
                return self._failure(exc, method, url, ctx, timed_out=stopped is not None)
        ctx.log("stdout", f"{response.status_code} {response.reason_phrase}")
        wanted = f.get("expect_status") or []
        return _outcome(
            response, [int(s) for s in (wanted if isinstance(wanted, list) else [wanted])]
        )

    def _failure(
        self, exc: Exception, method: str, url: str, ctx: RunContext, *, timed_out: bool = False
    ) -> Outcome:
        if timed_out or isinstance(exc, self._httpx.TimeoutException):
            error = f"{timeout_error(ctx.timeout or DEFAULT_TIMEOUT)}: {method} {url}"
            return Outcome(State.FAILED, reason="timeout", error=error)
        if isinstance(exc, self._httpx.ConnectError):
            return Outcome(
                State.FAILED, reason="error", error=f"cannot connect to {url}: {_why(exc)}"
            )
        return Outcome(State.FAILED, reason="error", error=f"cannot {method} {url}: {_why(exc)}")

    def close(self) -> None:
        pass


class _Sockets:
    """The request's sockets, seen through httpcore's ``trace`` hook, so that a cancel
    can shut them down and wake the blocked read at once (closing the client cannot)."""

    def __init__(self) -> None:
        self.open: list[socket.socket] = []

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith(("connect_tcp.complete", "start_tls.complete")):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                self.open.append(sock)

    def shut(self) -> None:
        for sock in self.open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _outcome(response: Any, expect: list[int]) -> Outcome:
    outputs = _outputs(response)
    ok = response.status_code in expect if expect else 200 <= response.status_code < 300
    if ok:
        return Outcome(State.SUCCESS, outputs=outputs)
    wanted = ", ".join(map(str, expect)) if expect else "2xx"
    return Outcome(
        State.FAILED,
        reason="status",
        outputs=outputs,
        error=f"expected status {wanted}; got {response.status_code}",
    )


def _body(body: Any) -> bytes | None:
    if body is None:
        return None
    return (body if isinstance(body, str) else json.dumps(body)).encode()


def _why(exc: BaseException) -> str:
    """The innermost cause, which names what really happened (``Connection refused``)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _outputs(response: Any) -> dict[str, Any]:
    outputs: dict[str, Any] = {"status": response.status_code, "headers": dict(response.headers)}
    if "json" in response.headers.get("content-type", ""):
        try:
            outputs["json"] = response.json()
            return outputs
        except ValueError:
            pass
    text = response.text
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"\n[truncated: {len(text)} characters in all]"
    outputs["text"] = text
    return outputs
