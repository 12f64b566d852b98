"""``/api/flows``: list, read, create or update from YAML or JSON, validate, activate."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from ordo import services, views
from ordo.api import models
from ordo.api.app import Caller, Reader, StoreDep, Writer, store_of
from ordo.api.bodies import flow_text
from ordo.errors import DefinitionError, Problem, UsageError
from ordo.masking import MASK
from ordo.store import Store
from ordo.store.records import Revision
from ordo.triggers.scheduler import iso, next_fire_times

router = APIRouter(prefix="/api/flows", tags=["flows"])

FLOW_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


def label_pairs(items: list[str]) -> dict[str, str]:
    """``label=KEY=VALUE`` query values as a mapping; UsageError for one without ``=``."""
    wanted = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"label: expected KEY=VALUE, found {item!r}")
        wanted[key] = value
    return wanted


def visible_flow(
    store: Store, who: Caller, namespace: str, flow_id: str, revision: int | None = None
) -> Revision:
    """The flow (or revision), when the token may see its namespace; else NotFound."""
    who.find(namespace, f"flow {namespace}/{flow_id}")
    return services.find_flow(store, namespace, flow_id, revision)


def flow_summary(store: Store, revision: Revision, active: bool | None = None) -> dict[str, Any]:
    """A flow as lists show it; ``active`` when the caller has read the flags already."""
    flow = revision.flow
    if active is None:
        active = store.flow_active(flow.namespace, flow.id)
    return {
        "namespace": flow.namespace,
        "id": flow.id,
        "revision": revision.revision,
        "description": flow.description,
        "labels": dict(flow.labels),
        "active": active,
        "allow_manual": flow.allow_manual,
        "triggers": [t.to_dict() | {"key": MASK if t.key else ""} for t in flow.triggers],
        "tasks": [t.id for t in flow.tasks],
        "inputs": {i.name: i.to_dict() for i in flow.inputs},
        "created_at": revision.created_at,
    }


@router.get(
    "", summary="List flows (newest revision of each)", response_model=list[models.FlowSummary]
)
def list_flows(
    store: StoreDep,
    who: Reader,
    namespace: str | None = None,
    label: list[str] = Query(default=[], description="KEY=VALUE; all must match"),
    q: str | None = Query(default=None, description="part of the id or description"),
) -> list[dict[str, Any]]:
    wanted = label_pairs(label)
    flags = store.flow_flags()  # one query for every flow's flag
    found = []
    for revision in store.list_flows():
        flow = revision.flow
        if namespace is not None and flow.namespace != namespace:
            continue
        if not who.sees(flow.namespace):
            continue
        if any(flow.labels.get(k) != v for k, v in wanted.items()):
            continue
        if q and q.lower() not in f"{flow.id} {flow.description}".lower():
            continue
        found.append(
            flow_summary(store, revision, flags.get((flow.namespace, flow.id), flow.active))
        )
    return found


@router.get(
    "/{namespace}/{flow_id}",
    summary="A flow: newest revision and all revisions",
    response_model=models.FlowDetail,
)
def get_flow(
    store: StoreDep,
    who: Reader,
    namespace: str,
    flow_id: str,
    revision: int | None = Query(default=None, ge=1, le=2**63 - 1),
) -> dict[str, Any]:
    found = visible_flow(store, who, namespace, flow_id, revision)
    return {
        **flow_summary(store, found),
        "definition": found.flow.to_dict(),
        "source": store.revision_source(found.id),
        "revisions": store.revisions(namespace, flow_id),
    }


@router.post(
    "",
    summary="Create or update a flow from YAML or JSON",
    openapi_extra=FLOW_BODY,
    response_model=models.FlowSummary,
)
async def create_flow(request: Request, who: Writer) -> JSONResponse:
    text, fmt = await flow_text(request)
    return await run_in_threadpool(_stored, request, who, text, fmt, None)


@router.put(
    "/{namespace}/{flow_id}",
    summary="Update a flow from YAML or JSON",
    openapi_extra=FLOW_BODY,
    response_model=models.FlowSummary,
)
async def update_flow(request: Request, who: Writer, namespace: str, flow_id: str) -> JSONResponse:
    text, fmt = await flow_text(request)
    return await run_in_threadpool(_stored, request, who, text, fmt, (namespace, flow_id))


def _stored(
    request: Request,
    who: Caller,
    text: str,
    fmt: Literal["yaml", "json"] | None,
    key: tuple[str, str] | None,
) -> JSONResponse:
    """Validate and store a flow text (in a worker thread: parsing never holds the event
    loop), with this thread's store."""
    store = store_of(request)
    if key is not None:
        who.may_use(key[0])
    flow = services.validate_text(text, fmt)
    who.may_use(flow.namespace)
    if key is not None and (flow.namespace, flow.id) != key:
        raise DefinitionError(
            [
                Problem(
                    f"the body defines {flow.key}, not {key[0]}/{key[1]}",
                    "request body",
                    field="id",
                )
            ]
        )
    before = store.find_flow(flow.namespace, flow.id, None)
    revision = services.register_text(store, text, time.time(), fmt=fmt)
    created = before is None or before.id != revision.id
    summary = models.FlowSummary.model_validate(flow_summary(store, revision))
    return JSONResponse(summary.model_dump(mode="json"), status_code=201 if created else 200)


@router.post(
    "/validate",
    summary="Check a flow without storing it",
    openapi_extra=FLOW_BODY,
    response_model=models.Validated,
)
async def validate_flow(request: Request, who: Reader) -> dict[str, Any]:
    text, fmt = await flow_text(request)
    flow = await run_in_threadpool(services.validate_text, text, fmt)
    return {"valid": True, "namespace": flow.namespace, "id": flow.id}


class Active(BaseModel):
    active: bool


@router.post("/{namespace}/{flow_id}/activate", summary="Let triggers start the flow")
def activate(store: StoreDep, who: Writer, namespace: str, flow_id: str) -> Active:
    who.find(namespace, f"flow {namespace}/{flow_id}")
    services.set_active(store, namespace, flow_id, True, time.time())
    return Active(active=True)


@router.post("/{namespace}/{flow_id}/deactivate", summary="Make triggers ignore the flow")
def deactivate(store: StoreDep, who: Writer, namespace: str, flow_id: str) -> Active:
    who.find(namespace, f"flow {namespace}/{flow_id}")
    services.set_active(store, namespace, flow_id, False, time.time())
    return Active(active=False)


@router.get(
    "/{namespace}/{flow_id}/next",
    summary="The next fire times of its schedules",
    response_model=list[models.NextTimes],
)
def next_times(
    store: StoreDep,
    who: Reader,
    namespace: str,
    flow_id: str,
    count: int = Query(default=5, ge=1, le=100),
) -> list[dict[str, Any]]:
    flow = visible_flow(store, who, namespace, flow_id).flow
    now = time.time()
    return [
        {
            "trigger": t.id,
            "cron": t.cron,
            "timezone": t.timezone,
            "times": [iso(x) for x in next_fire_times(t, now, count)],
        }
        for t in flow.triggers
        if t.type == "schedule"
    ]


@router.get(
    "/{namespace}/{flow_id}/revisions",
    summary="Every revision of the flow, newest first",
    response_model=list[models.RevisionRow],
)
def revisions(store: StoreDep, who: Reader, namespace: str, flow_id: str) -> list[dict[str, Any]]:
    who.find(namespace, f"flow {namespace}/{flow_id}")
    return views.revision_history(store, namespace, flow_id)


@router.get(
    "/{namespace}/{flow_id}/revisions/{number}",
    summary="One revision: its stored source and the files it referenced",
    response_model=models.RevisionDocument,
)
def revision(
    store: StoreDep,
    who: Reader,
    namespace: str,
    flow_id: str,
    number: int = Path(ge=1, le=2**63 - 1),
) -> dict[str, Any]:
    who.find(namespace, f"flow {namespace}/{flow_id}")
    return views.revision_document(store, namespace, flow_id, number)


@router.get(
    "/{namespace}/{flow_id}/diff",
    summary="A unified diff between two revisions (text/plain)",
    response_class=PlainTextResponse,
)
def diff(
    store: StoreDep,
    who: Reader,
    namespace: str,
    flow_id: str,
    from_: int = Query(alias="from", ge=1, le=2**63 - 1),
    to: int = Query(ge=1, le=2**63 - 1),
) -> str:
    who.find(namespace, f"flow {namespace}/{flow_id}")
    return views.revision_diff(store, namespace, flow_id, from_, to)
