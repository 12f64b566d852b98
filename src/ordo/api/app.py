"""The REST API's application: :func:`create_app` builds it around a store URL.

Routes are plain (sync) functions run in Starlette's thread pool; each request borrows
a store connection of a bounded pool for its whole work (:class:`Stores`), so no
connection is ever used by two requests at once. Every route but
``/health`` and the webhooks needs ``Authorization: Bearer <token>``; a read-only token
may only read. Errors are one JSON shape, ``{"detail": ..., "problems": [...]}``, with
the status of :func:`ordo.errors.http_status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from msgspec import Struct
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordo import services
from ordo.api.streams import Streams, TooManyStreams
from ordo.engine import open_store
from ordo.errors import (
    DefinitionError,
    Forbidden,
    NotFound,
    OrdoError,
    StoreUnavailable,
    http_status,
)
from ordo.store import Store

TOKEN_USE_EVERY = 60.0  # seconds between updates of a token's last use
RETRY_AFTER = 1  # seconds a 503 (busy, store unavailable) asks the client to wait
T = TypeVar("T")


class Caller(Struct, frozen=True):
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


class PoolTimeout(OrdoError):
    """No store connection came free in time: 503 with ``Retry-After``."""


class Stores:
    """A bounded pool of store connections. A request borrows one for all its work
    (:func:`store_of`) and gives it back when its answer starts, so no two requests
    ever use one connection at the same time and no transaction spans two requests.
    At most ``size`` are open; a request that waits ``wait`` seconds for one gets
    :class:`PoolTimeout`. A connection that lost its server (``StoreUnavailable``) is
    closed with every idle one (they lost it too) and opened anew when next needed."""

    def __init__(self, url: str, *, size: int = 10, wait: float = 10.0) -> None:
        self.url = url
        self.size = size
        self.wait = wait
        self._free = threading.BoundedSemaphore(size)
        self._idle: list[Store] = []
        self._lock = threading.Lock()
        self._closed = False

    def borrow(self) -> Store:
        if not self._free.acquire(timeout=self.wait):
            raise PoolTimeout(
                f"the server is busy: no store connection came free in {self.wait:g} s "
                f"(all {self.size} in use); try again"
            )
        try:
            with self._lock:
                if self._idle:
                    return self._idle.pop()
            return open_store(self.url)
        except BaseException:
            self._free.release()
            raise

    def give_back(self, store: Store, *, broken: bool = False) -> None:
        try:
            with self._lock:
                dropped = [store] if broken or self._closed else []
                if broken:  # the others lost the server too: open new ones when needed
                    dropped += self._idle
                    self._idle.clear()
                elif not self._closed:
                    self._idle.append(store)
            for gone in dropped:
                with contextlib.suppress(Exception):
                    gone.close()
        finally:
            self._free.release()

    @contextlib.contextmanager
    def using(self) -> Iterator[Store]:
        """A connection for one unit of work in this thread."""
        store = self.borrow()
        broken = False
        try:
            yield store
        except StoreUnavailable:
            broken = True
            raise
        except OrdoError:
            raise
        except BaseException:
            broken = True  # not knowing what state it is in, do not reuse it
            raise
        finally:
            self.give_back(store, broken=broken)

    def run(self, work: Callable[[Store], T]) -> T:
        """``work(store)`` with a connection borrowed for just that (a blocking call:
        from async code, through the thread pool)."""
        with self.using() as store:
            return work(store)

    async def look(self, work: Callable[[Store], T]) -> T:
        """``work(store)`` from async code (a stream's look), in the thread pool on a
        briefly borrowed connection; while the pool is busy or the store away, it
        waits (without a thread) and tries again, so the stream stays open."""
        pause = 0.1
        while True:
            try:
                return await run_in_threadpool(self.run, work)
            except (PoolTimeout, StoreUnavailable):
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for store in self._idle:
                with contextlib.suppress(Exception):
                    store.close()
            self._idle.clear()


class Lease:
    """The connection of one request, borrowed on first use (in the request's thread)
    and given back by :meth:`end` (in the event loop), which also lets the next
    request in (``on_end``)."""

    def __init__(self, stores: Stores, on_end: Callable[[], None]) -> None:
        self.stores = stores
        self.store: Store | None = None
        self.broken = False
        self._on_end: Callable[[], None] | None = on_end
        self._lock = threading.Lock()

    def get(self) -> Store:
        with self._lock:
            if self._on_end is None:
                raise RuntimeError("this request's store connection was given back already")
            if self.store is None:
                self.store = self.stores.borrow()
            return self.store

    def end(self) -> None:
        with self._lock:
            store, self.store = self.store, None
            on_end, self._on_end = self._on_end, None
        if store is not None:
            self.stores.give_back(store, broken=self.broken)
        if on_end is not None:
            on_end()


class Leasing:
    """Lets at most ``stores.size`` requests work with the store at a time; the others
    wait here, holding no thread, up to ``stores.wait`` seconds (then 503 with
    ``Retry-After``). Each request in gets its :class:`Lease`, ended when its answer
    starts (a streamed answer borrows connections of its own, briefly, per look) or
    the request fails. ``/health`` and static files need no store and skip the line."""

    def __init__(self, app: ASGIApp, stores: Stores) -> None:
        self.app = app
        self.stores = stores
        self._line: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or path == "/health" or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        if self._line is None:
            self._line = asyncio.Semaphore(self.stores.size)
        line = self._line
        try:
            await asyncio.wait_for(line.acquire(), self.stores.wait)
        except TimeoutError:
            await _busy(self.stores, send)
            return
        lease = Lease(self.stores, on_end=line.release)
        scope[LEASE] = lease

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                lease.end()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            lease.broken = True
            raise
        finally:
            lease.end()


async def _busy(stores: Stores, send: Send) -> None:
    detail = (
        f"the server is busy: no store connection came free in {stores.wait:g} s "
        f"(all {stores.size} in use); try again"
    )
    response = JSONResponse(
        {"detail": detail}, status_code=503, headers={"Retry-After": str(RETRY_AFTER)}
    )
    await response({"type": "http"}, _no_body, send)


LEASE = "ordo.lease"


def create_app(
    db_url: str,
    *,
    max_body: int = 1_048_576,
    max_upload: int = 10_485_760,
    pool_size: int = 10,
    pool_wait: float = 10.0,
) -> FastAPI:
    """The API over the store at ``db_url``; request bodies over ``max_body`` bytes are
    refused with 413; at most ``pool_size`` store connections, a request waits at most
    ``pool_wait`` seconds for one (then 503)."""
    from ordo.api import docs, executions, flows, models, others, packages, schedules

    stores = Stores(db_url, size=pool_size, wait=pool_wait)
    health = others.HealthCheck(db_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        stores.close()
        health.close()

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
    app.state.health = health
    app.state.streams = Streams()
    app.state.loops = []  # the server's background loops (ordo.server), for /health
    app.add_exception_handler(OrdoError, _ordo_error)  # type: ignore[arg-type]
    app.add_exception_handler(ValueError, _value_error)  # type: ignore[arg-type]
    for module in (flows, packages, schedules, executions, others):
        app.include_router(module.router)
    app.state.max_upload = max_upload
    app.add_middleware(BodyLimit, limit=max_body, upload_limit=max_upload)
    app.add_middleware(Leasing, stores=stores)
    return app


def store_of(request: Request) -> Store:
    """The request's own store connection (see :class:`Stores`)."""
    lease: Lease | None = request.scope.get(LEASE)
    if lease is None:  # not through Leasing: a route of an app built without it
        raise RuntimeError("store_of outside a request of create_app's application")
    return lease.get()


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
    lease: Lease | None = request.scope.get(LEASE)
    if isinstance(exc, StoreUnavailable) and lease is not None:
        lease.broken = True
    if isinstance(exc, PoolTimeout | StoreUnavailable):
        return JSONResponse(
            {"detail": str(exc)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER)}
        )
    if isinstance(exc, TooManyStreams):
        return JSONResponse(
            {"detail": str(exc)}, status_code=429, headers={"Retry-After": str(RETRY_AFTER)}
        )
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


#: Routes that take uploads (packages): their bodies may be as large as uploads may.
UPLOAD_PATHS = ("/api/packages", "/flows/new-package")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether the client says
    their length (Content-Length) or streams them. The body is read (up to the limit)
    before the route runs, so that a route reading a form or a model answers 413 too,
    not its own 400 or 401. The routes of :data:`UPLOAD_PATHS` take ``upload_limit``
    bytes per file (``server.max_upload``): their body may hold a few of them."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int = 10_485_760) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit, "server.max_body"
        if scope.get("path", "").startswith(UPLOAD_PATHS):
            limit, setting = max(self.limit, 4 * self.upload_limit), "4 x server.max_upload"
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit, send, setting)
            return
        chunks: list[bytes] = []
        seen = 0
        first: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # the client left: the route sees it
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                await _too_large(limit, send, setting)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if first is None:
            first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return first

        await self.app(scope, replay, send)


async def _too_large(limit: int, send: Send, setting: str = "server.max_body") -> None:
    response = JSONResponse(
        {"detail": f"request body too large: at most {limit} bytes ({setting})"},
        status_code=413,
    )
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
