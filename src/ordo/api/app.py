"""The REST API's application: :func:`create_app` builds it around a store URL.

Routes are plain (sync) functions run in Starlette's thread pool; each thread has its
own store connection (a store is used by one thread at a time). Every route but
``/health`` and the webhooks needs ``Authorization: Bearer <token>``; a read-only token
may only read. Errors are one JSON shape, ``{"detail": ..., "problems": [...]}``, with
the status of :func:`ordo.errors.http_status`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordo import services
from ordo.errors import DefinitionError, Forbidden, NotFound, OrdoError, http_status
from ordo.store import Store, open_store

TOKEN_USE_EVERY = 60.0  # seconds between updates of a token's last use


@dataclass(frozen=True)
class Caller:
    """Who is asking: the token's name, whether it may change things, and the
    namespaces it is limited to (None: every namespace)."""

    name: str
    read_only: bool
    namespaces: tuple[str, ...] | None = None

    @property
    def who(self) -> str:
        return f"api token {self.name}"

    def sees(self, namespace: str) -> bool:
        return self.namespaces is None or namespace in self.namespaces

    def find(self, namespace: str, what: str) -> None:
        """NotFound (``what`` not found, as if it did not exist) for a thing in a
        namespace the token is not limited to."""
        if not self.sees(namespace):
            raise NotFound(f"{what} not found")

    def may_use(self, namespace: str) -> None:
        """Forbidden when the caller names a namespace of its own choice (a flow it
        sends) that the token is not limited to."""
        if not self.sees(namespace):
            allowed = ", ".join(self.namespaces or ())
            raise Forbidden(
                f"token {self.name!r} is limited to namespaces {allowed}; not {namespace!r}"
            )

    def unscoped(self, what: str) -> None:
        """Forbidden for a token limited to namespaces: ``what`` belongs to none."""
        if self.namespaces is not None:
            raise Forbidden(
                f"token {self.name!r} is limited to namespaces; {what} belong to no namespace"
            )


class Stores:
    """One store connection per thread, opened on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._all: list[Store] = []
        self._lock = threading.Lock()
        self._used: dict[int, float] = {}

    def get(self) -> Store:
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = open_store(self.url)
            self._local.store = store
            with self._lock:
                self._all.append(store)
        return store

    def close(self) -> None:
        with self._lock:
            for store in self._all:
                store.close()
            self._all.clear()


def create_app(db_url: str, *, max_body: int = 1_048_576) -> FastAPI:
    """The API over the store at ``db_url``; request bodies over ``max_body`` bytes are
    refused with 413."""
    from ordo.api import docs, executions, flows, models, others

    stores = Stores(db_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        stores.close()

    app = FastAPI(
        lifespan=lifespan,
        title="ordo",
        version="1",
        description="Flows, executions, events and webhooks of an ordo store.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # served from vendored files by ordo.api.docs
        redoc_url=None,
        responses=models.ERRORS,
    )
    docs.add_docs(app, "/api/openapi.json")
    app.state.stores = stores
    app.add_exception_handler(OrdoError, _ordo_error)  # type: ignore[arg-type]
    app.add_exception_handler(ValueError, _value_error)  # type: ignore[arg-type]
    for module in (flows, executions, others):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, limit=max_body)
    return app


def store_of(request: Request) -> Store:
    stores: Stores = request.app.state.stores
    return stores.get()


StoreDep = Annotated[Store, Depends(store_of)]


#: The OpenAPI document's security scheme (``HTTPBearer``): Swagger UI's Authorize button
#: sends the token it is given as ``Authorization: Bearer <token>``.
bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `ordo tokens create` (read-only tokens may only read).",
)


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> Caller:
    """The caller of a route that reads: any valid token."""
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized("this needs an API token: Authorization: Bearer <token>")
    store = store_of(request)
    found = store.find_token(services.token_hash(credentials.credentials.strip()))
    if found is None or found.revoked_at is not None:
        raise Unauthorized("unknown or revoked API token (ordo tokens list)")
    now = time.time()
    if found.last_used_at is None or now - found.last_used_at > TOKEN_USE_EVERY:
        store.token_used(found.id, now)
    return Caller(found.name, found.read_only, found.namespaces)


def writer(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """The caller of a route that changes something: not a read-only token."""
    if who.read_only:
        raise ReadOnly(f"token {who.name!r} is read-only: it cannot change anything")
    return who


Reader = Annotated[Caller, Depends(caller)]
Writer = Annotated[Caller, Depends(writer)]


class Unauthorized(OrdoError):
    pass


class ReadOnly(OrdoError):
    pass


def _ordo_error(request: Request, exc: OrdoError) -> JSONResponse:
    if isinstance(exc, Unauthorized):
        return JSONResponse(
            {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    status = 403 if isinstance(exc, ReadOnly) else http_status(exc)
    body: dict[str, Any] = {"detail": str(exc)}
    if isinstance(exc, DefinitionError):
        body["problems"] = [
            {"message": p.message, "line": p.line, "column": p.column, "field": p.field}
            for p in exc.problems
        ]
    current = getattr(exc, "current_state", None)
    if current is not None:
        body["state"] = current
    return JSONResponse(body, status_code=status)


def _value_error(request: Request, exc: ValueError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


def not_found(what: str) -> NotFound:
    return NotFound(f"{what} not found")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether the client says
    their length (Content-Length) or streams them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(self.limit, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(self.limit, send)


class _TooLarge(Exception):
    pass


async def _too_large(limit: int, send: Send) -> None:
    response = JSONResponse(
        {"detail": f"request body too large: at most {limit} bytes"}, status_code=413
    )
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
