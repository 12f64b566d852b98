"""The web UI around the API: :func:`create_site` is what ``ordo server`` serves.

Pages are rendered on the server (Jinja2); htmx swaps parts of them and Server-Sent
Events tell open pages when something changed. No build step, nothing fetched from the
internet: the two vendored scripts live in ``static/vendor`` with their licenses.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio.to_thread
from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ordo.api import streams
from ordo.api.app import Stores, create_app, store_of
from ordo.api.streams import EventStream
from ordo.errors import OrdoError, http_status
from ordo.store import Store
from ordo.ui import auth
from ordo.ui.drawing import dag_svg, seconds

HERE = Path(__file__).parent
LIVE_GAP = 0.5  # at least this long between two looks for changes (and change events)
LIVE_PING = 15.0  # a comment this often keeps proxies from closing the stream

templates = Jinja2Templates(directory=HERE / "templates")


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def _ago(ts: float | None) -> str:
    if ts is None:
        return ""
    return seconds(max(0.0, time.time() - ts)) + " ago"


def _clock(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def _took(start: float | None, end: float | None) -> str:
    if start is None:
        return ""
    return seconds((end or time.time()) - start)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


templates.env.filters.update(
    when=_when, iso=_iso, ago=_ago, json=_json, compact=_compact, clock=_clock
)
templates.env.globals.update(took=_took, urlencode=urlencode, draw_dag=dag_svg)


def page(
    request: Request,
    name: str,
    viewer: auth.Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A template rendered with what every page needs (the viewer, its CSRF token)."""
    return templates.TemplateResponse(
        request, name, {"viewer": viewer, **context}, status_code=status_code
    )


def create_site(
    db_url: str,
    *,
    max_body: int = 1_048_576,
    max_upload: int = 10_485_760,
    session_key: bytes | None = None,
) -> FastAPI:
    """The API (``/api``) and the pages (``/``) over the store at ``db_url``. UI sessions
    are signed with ``session_key`` (servers of one store must share it); without one, a
    random key of this process (sessions end when it stops)."""
    from ordo.ui import actions, making, pages

    app = create_app(db_url, max_body=max_body, max_upload=max_upload)
    app.state.session_key = session_key or os.urandom(32)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(making.router)  # before pages: /flows/new is not a flow
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.add_api_route("/login", login_form, methods=["GET"], include_in_schema=False)
    app.add_api_route("/login", login, methods=["POST"], include_in_schema=False)
    app.add_api_route("/logout", logout, methods=["POST"], include_in_schema=False)
    app.add_api_route("/ui/live", live, methods=["GET"], include_in_schema=False)
    app.add_exception_handler(auth.SignIn, _sign_in)  # type: ignore[arg-type]
    for refused in (auth.BadCsrf, auth.ReadOnlySession):
        app.add_exception_handler(refused, _refused)  # type: ignore[arg-type]
    return app


def _refused(request: Request, exc: OrdoError) -> HTMLResponse:
    return error_page(request, exc, None)


def _sign_in(request: Request, exc: auth.SignIn) -> Response:
    target = "/login?" + urlencode({"next": exc.next_url})
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, exc: OrdoError, viewer: auth.Session | None) -> HTMLResponse:
    status = 403 if isinstance(exc, auth.BadCsrf | auth.ReadOnlySession) else http_status(exc)
    return page(request, "error.html", viewer, status_code=status, message=str(exc))


def _safe_next(value: str | None) -> str:
    """Only a path of this site: never another host (an open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _login_page(request, 200, _safe_next(next), None)


def _login_page(request: Request, status: int, next_url: str, error: str | None) -> HTMLResponse:
    """The sign-in form with a fresh pre-session CSRF token (its nonce in a cookie)."""
    nonce = auth.login_nonce()
    csrf = auth.login_csrf(auth.session_key(request), nonce)
    response = page(request, "login.html", None, status, next=next_url, error=error, csrf=csrf)
    _set_cookie(response, request, auth.LOGIN_COOKIE, nonce, auth.LOGIN_SECONDS, "/login")
    return response


def _set_cookie(
    response: Response, request: Request, name: str, value: str, max_age: int, path: str
) -> None:
    """Every cookie of the UI: not readable by scripts, never sent cross-site, and only
    over https when the page came over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=path,
    )


def login(
    request: Request,
    token: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    key = auth.session_key(request)
    if not auth.login_allowed(key, request.cookies.get(auth.LOGIN_COOKIE), csrf):
        error = "this sign-in form is out of date or came from another site: sign in again"
        return _login_page(request, 403, _safe_next(next), error)
    cookie = auth.sign_in(store_of(request), token, time.time(), key) if token.strip() else None
    if cookie is None:
        error = "unknown or revoked API token" if token.strip() else "enter an API token"
        return _login_page(request, 401, _safe_next(next), error)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.delete_cookie(auth.LOGIN_COOKIE, path="/login")
    _set_cookie(response, request, auth.COOKIE, cookie, auth.SESSION_SECONDS, "/")
    return response


async def logout(request: Request, viewer: auth.Actor) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/")
    return response


async def live(
    request: Request,
    viewer: auth.Viewer,
    execution: int | None = Query(default=None, ge=1, le=2**63 - 1),
    seen: str = Query(default="", max_length=60, description="the page's mark()"),
) -> EventStream:
    """``changed`` events whenever a state changes (of ``execution``, or anywhere) or an
    execution is created: the page then fetches the parts that show it. ``seen`` is
    what the page showed (its :func:`mark`): a change between rendering the page and
    opening this stream is sent at once."""
    stores: Stores = request.app.state.stores
    if execution is not None:
        found = await anyio.to_thread.run_sync(stores.run, lambda s: s.get_execution(execution))
        viewer.caller.find(found.namespace, f"execution {execution}")
    ticket = request.app.state.streams.open(viewer.caller.name)
    return EventStream(_changes(stores, execution, seen), ticket)


def mark(store: Store, execution: int | None = None) -> str:
    """What a live page has seen, read before the page's data: ``/ui/live?seen=``."""
    return "-".join(map(str, store.last_change(execution)))


async def _changes(stores: Stores, execution: int | None, shown: str) -> AsyncIterator[str]:
    """Async: between looks (every :data:`LIVE_GAP`) it sleeps, holding no thread and
    no connection; Starlette ends it when the page goes away."""

    def look(store: Store) -> str:
        return mark(store, execution)

    seen = shown or await stores.look(look)
    yield "retry: 1000\n\n"
    pinged = time.monotonic()
    while True:
        await asyncio.sleep(LIVE_GAP)
        now = time.monotonic()
        current = await stores.look(look)
        if current != seen:
            seen = current
            yield streams.event("changed", current)
        elif now - pinged > LIVE_PING:
            pinged = now
            yield ": ping\n\n"
