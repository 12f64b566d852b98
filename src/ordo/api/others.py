"""``/health``, ``/metrics`` (Prometheus text), events, webhooks, connections (secrets
write-only) and workers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

import msgspec
from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from ordo import services, views
from ordo.api import models
from ordo.api.app import LEASE, RETRY_AFTER, Lease, Reader, StoreDep, Stores, Writer, store_of
from ordo.api.bodies import json_body
from ordo.engine import open_store
from ordo.errors import OrdoError
from ordo.model import State
from ordo.store import Store
from ordo.store.records import BUCKETS

router = APIRouter()
WEBHOOK_WAIT = 30.0  # seconds a synchronous webhook waits for the execution's end
WEBHOOK_POLL = 0.05


@router.get(
    "/health",
    tags=["server"],
    summary="Whether the server, its store and its background loops work",
    response_model=None,
    responses={200: {"model": models.Health}},
)
async def health(request: Request) -> JSONResponse:
    """200 ``{"status": "ok"}``; 503 ``{"status": "unavailable", "store": reason}``
    while the store does not answer, or ``{"status": "degraded", LOOP: "stopped: ..."}``
    while a background loop of the server is down. Its own connection on its own
    thread: it answers while every pooled connection is busy."""
    checker: HealthCheck = request.app.state.health
    reason = await checker.store_reason()
    if reason is not None:
        body = {"status": "unavailable", "store": reason}
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER)})
    down = {loop.name: loop.trouble for loop in loops_of(request) if loop.trouble}
    if down:
        return JSONResponse({"status": "degraded", **down}, status_code=503)
    return JSONResponse({"status": "ok"})


class Supervised(Protocol):
    """A background loop of the server as /health and /metrics see it."""

    name: str
    restarts: int

    @property
    def trouble(self) -> str | None: ...


def loops_of(request: Request) -> list[Supervised]:
    return list(getattr(request.app.state, "loops", []))


class HealthCheck:
    """Pings the store on a connection and a thread of its own (opened again after a
    failure), waiting at most ``patience`` seconds for an answer."""

    def __init__(self, url: str, patience: float = 10.0) -> None:
        self.url = url
        self.patience = patience
        self._store: Store | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ordo-health")

    def _ping(self) -> str | None:
        try:
            if self._store is None:
                self._store = open_store(self.url)
            self._store.ping()
            return None
        except OrdoError as exc:
            self.close_store()
            return str(exc)

    async def store_reason(self) -> str | None:
        try:
            found = self._thread.submit(self._ping)
            return await asyncio.wait_for(asyncio.wrap_future(found), self.patience)
        except TimeoutError:
            return f"the store did not answer in {self.patience:g} s"

    def close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            with contextlib.suppress(Exception):
                store.close()

    def close(self) -> None:
        self._thread.submit(self.close_store)
        self._thread.shutdown(wait=True)


@router.get(
    "/metrics",
    tags=["server"],
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
)
def metrics(request: Request, store: StoreDep, who: Reader) -> str:
    gauges = store.gauges(time.time())
    out = [
        "# HELP ordo_executions Executions in the store by state.",
        "# TYPE ordo_executions gauge",
    ]
    for state in State:
        out.append(
            f'ordo_executions{{state="{state.value}"}} {gauges.executions.get(state.value, 0)}'
        )
    out += [
        "# HELP ordo_task_run_duration_seconds Durations of ended task runs.",
        "# TYPE ordo_task_run_duration_seconds histogram",
    ]
    for bound, count in zip(BUCKETS, gauges.durations, strict=True):
        out.append(f'ordo_task_run_duration_seconds_bucket{{le="{bound}"}} {count}')
    out += [
        f'ordo_task_run_duration_seconds_bucket{{le="+Inf"}} {gauges.duration_count}',
        f"ordo_task_run_duration_seconds_sum {gauges.duration_sum}",
        f"ordo_task_run_duration_seconds_count {gauges.duration_count}",
        "# HELP ordo_ready_task_runs Task runs ready and waiting for a worker.",
        "# TYPE ordo_ready_task_runs gauge",
        f"ordo_ready_task_runs {gauges.ready}",
        "# HELP ordo_workers_alive Workers with a heartbeat in the last 35 s.",
        "# TYPE ordo_workers_alive gauge",
        f"ordo_workers_alive {gauges.workers}",
        "# HELP ordo_loop_restarts_total Restarts of this server's background loops "
        "after a failure.",
        "# TYPE ordo_loop_restarts_total counter",
    ]
    for loop in loops_of(request):
        out.append(f'ordo_loop_restarts_total{{loop="{loop.name}"}} {loop.restarts}')
    out += [
        "# HELP ordo_loop_up Whether this server's background loop works (1) or is down.",
        "# TYPE ordo_loop_up gauge",
    ]
    for loop in loops_of(request):
        out.append(f'ordo_loop_up{{loop="{loop.name}"}} {0 if loop.trouble else 1}')
    return "\n".join(out) + "\n"


EVENT_TYPE = Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")


@router.post(
    "/api/events/{event_type}",
    tags=["events"],
    status_code=202,
    summary="Record an event; every active flow subscribed to its type starts",
    response_model=models.Emitted,
)
async def post_event(request: Request, who: Writer, event_type: str = EVENT_TYPE) -> dict[str, Any]:
    data = await json_body(request)
    emitted = await run_in_threadpool(
        lambda: services.emit(store_of(request), event_type, data, time.time(), who.namespaces)
    )
    return {"id": emitted.event_id, "executions": emitted.executions, "errors": emitted.errors}


@router.get(
    "/api/events",
    tags=["events"],
    summary="Events received, newest first",
    response_model=list[models.Event],
)
def list_events(
    store: StoreDep,
    who: Reader,
    type: str | None = None,
    limit: int = Query(default=50, ge=1, le=500),
) -> list[dict[str, Any]]:
    who.unscoped("events")
    return [msgspec.structs.asdict(e) for e in store.list_events(type, limit)]


@router.post(
    "/api/webhooks/{namespace}/{flow_id}/{key}",
    tags=["webhooks"],
    summary="Start the flow with the JSON body as inputs.body (the key authenticates)",
    responses={202: {"description": "started; not ended within the wait (or async=1)"}},
    response_model=models.WebhookAnswer,
)
async def webhook(
    request: Request,
    namespace: str,
    flow_id: str,
    key: str,
    async_: bool = Query(default=False, alias="async"),
    wait: float = Query(default=WEBHOOK_WAIT, ge=0, le=300),
) -> JSONResponse:
    body = await json_body(request)
    stores: Stores = request.app.state.stores

    def start() -> int:
        store = store_of(request)
        revision, trigger = services.webhook_trigger(store, namespace, flow_id, key)
        key_header = request.headers.get("idempotency-key") or None
        return services.start_by_trigger(
            store, revision, trigger, {"body": body}, time.time(), idempotency_key=key_header
        )

    execution_id = await run_in_threadpool(start)
    lease: Lease = request.scope[LEASE]
    lease.end()  # waiting for the end borrows a connection per look
    deadline = time.monotonic() + (0 if async_ else wait)
    while True:
        execution = await run_in_threadpool(stores.run, lambda s: s.get_execution(execution_id))
        if execution.state.terminal or time.monotonic() >= deadline:
            break
        await asyncio.sleep(WEBHOOK_POLL)
    doc = {"id": execution.id, "state": execution.state.value, "outputs": execution.outputs}
    ended = execution.state.terminal and not async_  # async: 202 even if it ended already
    answer = models.WebhookAnswer.model_validate(doc).model_dump(mode="json")
    return JSONResponse(answer, status_code=200 if ended else 202)


class ConnectionBody(BaseModel):
    type: Literal["sql", "http"]
    url: str | None = Field(default=None, description="sql: the database URL")
    base_url: str | None = Field(default=None, description="http: the API's base URL")
    headers: dict[str, str] = Field(default_factory=dict, description="http: sent each call")


@router.get(
    "/api/connections",
    tags=["connections"],
    summary="Connections (masked)",
    response_model=list[models.Connection],
)
def list_connections(store: StoreDep, who: Reader) -> list[dict[str, Any]]:
    return [views.connection_dict(c) for c in store.list_connections()]


@router.get(
    "/api/connections/{name}",
    tags=["connections"],
    summary="A connection (masked)",
    response_model=models.Connection,
)
def get_connection(store: StoreDep, who: Reader, name: str) -> dict[str, Any]:
    return views.connection_dict(store.get_connection(name))


@router.put(
    "/api/connections/{name}",
    tags=["connections"],
    summary="Add or change one",
    response_model=models.Connection,
)
def put_connection(store: StoreDep, who: Writer, name: str, body: ConnectionBody) -> dict[str, Any]:
    who.unscoped("connections")
    config = services.connection_config(name, body.type, body.url, body.base_url, body.headers)
    store.save_connection(name, body.type, config, time.time(), replace=True)
    return views.connection_dict(store.get_connection(name))


@router.delete("/api/connections/{name}", tags=["connections"], status_code=204)
def delete_connection(store: StoreDep, who: Writer, name: str) -> None:
    who.unscoped("connections")
    store.remove_connection(name)


@router.get(
    "/api/workers",
    tags=["server"],
    summary="Workers alive or stopped in the last hour",
    response_model=list[models.Worker],
)
def list_workers(store: StoreDep, who: Reader) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {**msgspec.structs.asdict(w), "alive": w.stopped_at is None and now - w.heartbeat_at < 35}
        for w in store.list_workers(since=now - 3600)
    ]
