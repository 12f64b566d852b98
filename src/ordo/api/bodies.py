"""Request bodies read within limits: JSON (events, webhooks) and flow texts (YAML or
JSON), parsed off the event loop by :mod:`ordo.definitions.bounded`, so that a deep,
huge-numbered or alias-bomb body is a 422 naming what is wrong, never a 500 and never a
frozen server. (Bodies over ``server.max_body`` are refused with 413 before, by
:class:`ordo.api.app.BodyLimit`.)"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from ordo.definitions.bounded import load_json
from ordo.errors import DefinitionError, Problem

WHERE = "request body"


async def json_body(request: Request) -> Any:
    """The body as JSON (``{}`` when empty); DefinitionError (422) when it is not JSON,
    nests deeper than 100 levels or holds a number longer than 4300 digits."""
    raw = await request.body()
    if not raw.strip():
        return {}
    if len(raw) < 4096:
        return load_json(raw, WHERE)
    return await run_in_threadpool(load_json, raw, WHERE)


async def flow_text(request: Request) -> tuple[str, Literal["yaml", "json"] | None]:
    """The body as text, and "json" when its content type says so."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            [Problem(f"body is not UTF-8 text (byte {exc.start})", WHERE)]
        ) from None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return text, "json" if kind.endswith("json") else None
