"""``http`` tasks through httpx (imported on first use)."""

from __future__ import annotations

import json
from typing import Any

from ordo.model import Outcome, State
from ordo.runners.base import RunContext

MAX_TEXT = 1024 * 1024


class HttpRunner:
    def __init__(self) -> None:
        import httpx

        self._httpx = httpx

    def run(self, ctx: RunContext) -> Outcome:
        httpx = self._httpx
        f = ctx.fields
        method = str(f.get("method", "GET")).upper()
        url = str(f["url"])
        wanted = f.get("expect_status") or []
        expect = [int(s) for s in (wanted if isinstance(wanted, list) else [wanted])]
        ctx.log("stdout", f"{method} {url}")
        try:
            with httpx.Client(timeout=ctx.timeout or 30.0) as client:
                response = client.request(
                    method,
                    url,
                    headers=f.get("headers"),
                    params=f.get("params"),
                    json=f.get("json"),
                    content=_body(f.get("body")),
                )
        except httpx.TimeoutException:
            return Outcome(
                State.FAILED,
                reason="timeout",
                error=f"timed out after {ctx.timeout or 30:g}s: {method} {url}",
            )
        except httpx.HTTPError as exc:
            return Outcome(
                State.FAILED, reason="error", error=f"cannot {method} {url}: {_why(exc)}"
            )
        ctx.log("stdout", f"{response.status_code} {response.reason_phrase}")
        outputs = _outputs(response)
        ok = response.status_code in expect if expect else 200 <= response.status_code < 300
        if not ok:
            wanted = ", ".join(map(str, expect)) if expect else "2xx"
            return Outcome(
                State.FAILED,
                reason="status",
                outputs=outputs,
                error=f"expected status {wanted}; got {response.status_code}",
            )
        return Outcome(State.SUCCESS, outputs=outputs)

    def close(self) -> None:
        pass


def _body(body: Any) -> bytes | None:
    if body is None:
        return None
    return (body if isinstance(body, str) else json.dumps(body)).encode()


def _why(exc: Exception) -> str:
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    text = str(cause) or type(cause).__name__
    return "Connection refused" if "Connection refused" in text or "111" in text else text


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
        text = text[:MAX_TEXT] + f"\n[truncated: {len(response.text)} characters in all]"
    outputs["text"] = text
    return outputs
