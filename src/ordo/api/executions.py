"""``/api/executions``: start, list (cursor pages), read (task runs, attempts, logs with
``follow`` over Server-Sent Events, outputs, metrics) and change (kill, restart, replay,
mark, save) executions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ordo import definitions, services, views
from ordo.api import models, streams
from ordo.api.app import Caller, Reader, StoreDep, Stores, Writer
from ordo.api.flows import label_pairs, visible_flow
from ordo.api.streams import EventStream
from ordo.errors import Conflict, NotFound, UsageError
from ordo.model import KINDS, State
from ordo.store import Store
from ordo.store.records import ExecutionRow

router = APIRouter(prefix="/api", tags=["executions"])
MAX_ID = 2**63 - 1
ExecutionId = Annotated[int, Path(ge=1, le=MAX_ID, description="an execution's id")]


class StartBody(BaseModel):
    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    dev: bool = False
    skip: list[str] = Field(default_factory=list, description="task ids to skip")
    continue_on_error: bool | None = None
    revision: int | None = Field(default=None, ge=1, le=MAX_ID)
    queue: str | None = Field(
        default=None, description="run every task on this queue instead of its own"
    )
    retry: dict[str, Any] | None = Field(
        default=None,
        description="this run only: attempts, delay (like 30s), backoff over every task's retry",
    )
    timeout: str | float | None = Field(
        default=None, description="this run only: the execution's timeout (like 10m, or seconds)"
    )
    notify: list[dict[str, Any]] | None = Field(
        default=None,
        description="this run only: rules {on, email, webhook} added to the flow's notify",
    )


@router.post(
    "/flows/{namespace}/{flow_id}/executions",
    status_code=201,
    summary="Start an execution (the same Idempotency-Key starts it once)",
    response_model=models.Execution,
)
def start_execution(
    store: StoreDep,
    who: Writer,
    namespace: str,
    flow_id: str,
    body: StartBody | None = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    body = body or StartBody()
    options = definitions.read_run_options(body.retry, body.timeout, body.notify)
    revision = visible_flow(store, who, namespace, flow_id, body.revision)
    execution_id = services.start(
        store,
        revision,
        body.inputs,
        time.time(),
        started_by="api",
        labels=body.labels,
        dev=body.dev,
        idempotency_key=idempotency_key or None,
        skip_tasks=body.skip,
        continue_on_error=body.continue_on_error,
        queue=body.queue,
        options=options,
        scope=who.namespaces,
    )
    return views.execution_dict(store.get_execution(execution_id))


def visible(store: Store, who: Caller, execution_id: int) -> ExecutionRow:
    """The execution, when the token may see its namespace; else NotFound as if it
    did not exist."""
    execution = store.get_execution(execution_id)
    if not who.sees(execution.namespace):
        raise NotFound(f"execution {execution_id} not found")
    return execution


def _kind(value: str | None) -> str | None:
    if value is None:
        return None
    if value.upper() not in KINDS:
        raise UsageError(f"kind: unknown kind {value!r}; one of {', '.join(KINDS)}")
    return value.upper()


def _state(value: str | None) -> State | None:
    if value is None:
        return None
    try:
        return State(value.upper())
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise UsageError(f"state: unknown state {value!r}; one of {names}") from None


@router.get(
    "/executions",
    summary="List executions, newest first, a page at a time",
    response_model=models.ExecutionPage,
)
def list_executions(
    store: StoreDep,
    who: Reader,
    flow: str | None = Query(default=None, description="id or namespace/id"),
    namespace: str | None = None,
    state: str | None = None,
    dev: bool | None = None,
    saved: bool | None = None,
    kind: str | None = Query(
        default=None,
        description="FLOW, SCRIPT, CONNECTION or SCHEDULE; without it, flows and scripts",
    ),
    label: list[str] = Query(default=[], description="KEY=VALUE; all must match"),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: int | None = Query(default=None, ge=1, le=MAX_ID, description="next_cursor of a page"),
) -> dict[str, Any]:
    rows = store.list_executions(
        flow=flow,
        namespace=namespace,
        namespaces=who.namespaces,
        labels=label_pairs(label),
        state=_state(state),
        kind=_kind(kind),
        dev=dev,
        saved=saved,
        limit=limit,
        before=cursor,
    )
    next_cursor = rows[-1].id if len(rows) == limit else None
    return {"items": [views.execution_dict(e) for e in rows], "next_cursor": next_cursor}


@router.get(
    "/executions/{execution_id}",
    summary="An execution with its task runs",
    response_model=models.ExecutionDocument,
)
def get_execution(store: StoreDep, who: Reader, execution_id: ExecutionId) -> dict[str, Any]:
    visible(store, who, execution_id)
    doc = views.execution_document(store, execution_id)
    doc["notifications"] = [msgspec.structs.asdict(n) for n in store.notifications(execution_id)]
    return doc


@router.get(
    "/executions/{execution_id}/task-runs",
    summary="Its task runs",
    response_model=list[models.TaskRun],
)
def task_runs(store: StoreDep, who: Reader, execution_id: ExecutionId) -> list[dict[str, Any]]:
    visible(store, who, execution_id)
    runs: list[dict[str, Any]] = views.execution_document(store, execution_id)["task_runs"]
    return runs


@router.get(
    "/executions/{execution_id}/attempts",
    summary="Its attempts",
    response_model=list[models.Attempt],
)
def attempts(store: StoreDep, who: Reader, execution_id: ExecutionId) -> list[dict[str, Any]]:
    visible(store, who, execution_id)
    return [views.attempt_dict(a) for a in store.attempts(execution_id)]


@router.get(
    "/executions/{execution_id}/outputs",
    summary="Its outputs and its tasks'",
    response_model=models.Outputs,
)
def outputs(store: StoreDep, who: Reader, execution_id: ExecutionId) -> dict[str, Any]:
    execution = visible(store, who, execution_id)
    return {"execution": execution.outputs, "tasks": store.outputs(execution_id)}


@router.get(
    "/executions/{execution_id}/metrics", summary="Its metrics", response_model=list[models.Metric]
)
def metrics(store: StoreDep, who: Reader, execution_id: ExecutionId) -> list[dict[str, Any]]:
    visible(store, who, execution_id)
    return [views.metric_dict(m) for m in store.metrics(execution_id)]


@router.get(
    "/executions/{execution_id}/history",
    summary="Every state change of it and its task runs, oldest first, with time and reason",
    response_model=list[models.HistoryEntry],
)
def history(store: StoreDep, who: Reader, execution_id: ExecutionId) -> list[dict[str, Any]]:
    visible(store, who, execution_id)
    return views.state_history(store, execution_id)


@router.get(
    "/executions/{execution_id}/logs",
    summary="Its log lines; follow=true streams them as Server-Sent Events until it ends",
    response_model=None,
    responses={
        200: {
            "description": "the lines (JSON), or with follow=true a stream of `log` events "
            "(each one line's JSON) and one `end` event",
            "model": list[models.LogLine],
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
def logs(
    request: Request,
    store: StoreDep,
    who: Reader,
    execution_id: ExecutionId,
    after: int = Query(default=0, ge=0, le=MAX_ID, description="the id of the last line seen"),
    limit: int = Query(default=1000, ge=1, le=10_000),
    follow: bool = False,
) -> list[dict[str, Any]] | StreamingResponse:
    visible(store, who, execution_id)
    if not follow:
        names = _names(store, execution_id)
        lines = store.logs(execution_id, after_id=after, limit=limit)
        return [
            models.LogLine.model_validate(_line(x, names)).model_dump(mode="json") for x in lines
        ]
    ticket = request.app.state.streams.open(who.name)
    return EventStream(_follow(request.app.state.stores, execution_id, after), ticket)


def _line(x: Any, names: dict[int, tuple[str, int]]) -> dict[str, Any]:
    task, number = names.get(x.attempt_id, (None, None))
    return {
        "id": x.id,
        "attempt_id": x.attempt_id,
        "task": task,
        "attempt": number,
        "at": x.at,
        "stream": x.stream,
        "line": x.line,
    }


def _names(store: Store, execution_id: int) -> dict[int, tuple[str, int]]:
    """Each attempt's task run label and attempt number, by attempt id."""
    labels = {r.id: r.label for r in store.task_runs(execution_id)}
    return {a.id: (labels.get(a.task_run_id, "?"), a.number) for a in store.attempts(execution_id)}


async def _follow(stores: Stores, execution_id: int, after: int) -> AsyncIterator[str]:
    """Lines as ``log`` events (``id`` = line id, for Last-Event-ID), then one ``end``
    event with the final state. Between looks it sleeps (no thread, no connection
    held); each look borrows a pooled connection briefly."""
    names: dict[int, tuple[str, int]] = {}

    def look(store: Store) -> tuple[State, list[dict[str, Any]]]:
        state = store.get_execution(execution_id).state
        found = store.logs(execution_id, after_id=after, limit=1000)
        if any(x.attempt_id not in names for x in found):
            names.update(_names(store, execution_id))
        return state, [_line(x, names) for x in found]

    pauses = streams.pauses()
    while True:
        state, lines = await stores.look(look)
        for line in lines:
            after = line["id"]
            yield streams.event("log", json.dumps(line), line["id"])
        if state.terminal and len(lines) < 1000:
            yield streams.event("end", json.dumps({"state": state.value}))
            return
        if lines:
            pauses = streams.pauses()
            continue
        await asyncio.sleep(next(pauses))


def _with_state(store: Store, execution_id: ExecutionId, exc: Conflict) -> Conflict:
    exc.current_state = store.get_execution(execution_id).state.value  # type: ignore[attr-defined]
    return exc


@router.post(
    "/executions/{execution_id}/kill",
    summary="Kill it and its children",
    response_model=models.Execution,
)
def kill(store: StoreDep, who: Writer, execution_id: ExecutionId) -> dict[str, Any]:
    visible(store, who, execution_id)
    try:
        execution = services.kill(store, execution_id, who.who, time.time())
    except Conflict as exc:
        raise _with_state(store, execution_id, exc) from None
    return views.execution_dict(execution)


class RestartBody(BaseModel):
    from_task: str | None = Field(default=None, alias="from")
    inputs: dict[str, Any] = Field(default_factory=dict)
    latest: bool = Field(default=False, description="move to the flow's newest revision")


@router.post(
    "/executions/{execution_id}/restart",
    summary="Run it again in place",
    response_model=models.Restarted,
)
def restart(
    store: StoreDep, who: Writer, execution_id: ExecutionId, body: RestartBody | None = None
) -> dict[str, Any]:
    body = body or RestartBody()
    visible(store, who, execution_id)
    try:
        again = services.restart(
            store,
            execution_id,
            time.time(),
            from_task=body.from_task,
            inputs=body.inputs,
            latest=body.latest,
        )
    except Conflict as exc:
        raise _with_state(store, execution_id, exc) from None
    return {**views.execution_dict(store.get_execution(execution_id)), "run_again": again}


class ReplayBody(BaseModel):
    from_task: str = Field(alias="from")
    inputs: dict[str, Any] = Field(default_factory=dict)
    latest: bool = Field(default=False, description="replay the flow's newest revision")


@router.post(
    "/executions/{execution_id}/replay",
    status_code=201,
    summary="A new execution replaying it from a task",
    response_model=models.Execution,
)
def replay(
    store: StoreDep, who: Writer, execution_id: ExecutionId, body: ReplayBody
) -> dict[str, Any]:
    visible(store, who, execution_id)
    try:
        new_id = services.replay(
            store,
            execution_id,
            body.from_task,
            time.time(),
            inputs=body.inputs,
            latest=body.latest,
        )
    except Conflict as exc:
        raise _with_state(store, execution_id, exc) from None
    return views.execution_dict(store.get_execution(new_id))


class MarkBody(BaseModel):
    task: str
    state: str = Field(description="success or failed")
    reason: str | None = None


@router.post(
    "/executions/{execution_id}/mark",
    summary="Set an ended task run's state",
    response_model=models.Marked,
)
def mark(store: StoreDep, who: Writer, execution_id: ExecutionId, body: MarkBody) -> dict[str, Any]:
    visible(store, who, execution_id)
    marked = services.mark(
        store, execution_id, body.task, body.state, who.who, time.time(), body.reason
    )
    return {
        "task": marked.label,
        "old": marked.old.value,
        "new": marked.new.value,
        "execution": {"old": marked.execution_old.value, "new": marked.execution_new.value},
        "reopened": list(marked.reopened),
    }


class SaveBody(BaseModel):
    name: str
    description: str | None = None


@router.post(
    "/executions/{execution_id}/save",
    summary="Keep it under a name",
    response_model=models.Execution,
)
def save(store: StoreDep, who: Writer, execution_id: ExecutionId, body: SaveBody) -> dict[str, Any]:
    visible(store, who, execution_id)
    services.save(store, execution_id, body.name, body.description, time.time())
    return views.execution_dict(store.get_execution(execution_id))
