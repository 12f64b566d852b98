"""``/api/flows``: list, read, create or update from YAML or JSON, validate, activate."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ordo import services
from ordo.api.app import Reader, StoreDep, Writer
from ordo.errors import DefinitionError, Problem
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


@router.get("", summary="List flows (newest revision of each)")
def list_flows(
    store: StoreDep,
    who: Reader,
    namespace: str | None = None,
    label: list[str] = Query(default=[], description="KEY=VALUE; all must match"),
    q: str | None = Query(default=None, description="part of the id or description"),
) -> list[dict[str, Any]]:
    wanted = dict(item.partition("=")[::2] for item in label)
    flags = store.flow_flags()  # one query for every flow's flag
    found = []
    for revision in store.list_flows():
        flow = revision.flow
        if namespace is not None and flow.namespace != namespace:
            continue
        if any(flow.labels.get(k) != v for k, v in wanted.items()):
            continue
        if q and q.lower() not in f"{flow.id} {flow.description}".lower():
            continue
        found.append(
            flow_summary(store, revision, flags.get((flow.namespace, flow.id), flow.active))
        )
    return found


@router.get("/{namespace}/{flow_id}", summary="A flow: newest revision and all revisions")
def get_flow(
    store: StoreDep,
    who: Reader,
    namespace: str,
    flow_id: str,
    revision: int | None = Query(default=None, ge=1, le=2**63 - 1),
) -> dict[str, Any]:
    found = services.find_flow(store, namespace, flow_id, revision)
    return {
        **flow_summary(store, found),
        "definition": found.flow.to_dict(),
        "source": store.revision_source(found.id),
        "revisions": store.revisions(namespace, flow_id),
    }


async def _text(request: Request) -> tuple[str, Literal["yaml", "json"] | None]:
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            [Problem(f"body is not UTF-8 text (byte {exc.start})", "request body")]
        ) from None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return text, "json" if kind.endswith("json") else None


@router.post("", summary="Create or update a flow from YAML or JSON", openapi_extra=FLOW_BODY)
async def create_flow(request: Request, store: StoreDep, who: Writer) -> JSONResponse:
    text, fmt = await _text(request)
    return _stored(store, text, fmt, None)


@router.put(
    "/{namespace}/{flow_id}", summary="Update a flow from YAML or JSON", openapi_extra=FLOW_BODY
)
async def update_flow(
    request: Request, store: StoreDep, who: Writer, namespace: str, flow_id: str
) -> JSONResponse:
    text, fmt = await _text(request)
    return _stored(store, text, fmt, (namespace, flow_id))


def _stored(
    store: Store, text: str, fmt: Literal["yaml", "json"] | None, key: tuple[str, str] | None
) -> JSONResponse:
    flow = services.validate_text(text, fmt)
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
    return JSONResponse(flow_summary(store, revision), status_code=201 if created else 200)


@router.post("/validate", summary="Check a flow without storing it", openapi_extra=FLOW_BODY)
async def validate_flow(request: Request, who: Reader) -> dict[str, Any]:
    text, fmt = await _text(request)
    flow = services.validate_text(text, fmt)
    return {"valid": True, "namespace": flow.namespace, "id": flow.id}


class Active(BaseModel):
    active: bool


@router.post("/{namespace}/{flow_id}/activate", summary="Let triggers start the flow")
def activate(store: StoreDep, who: Writer, namespace: str, flow_id: str) -> Active:
    services.set_active(store, namespace, flow_id, True, time.time())
    return Active(active=True)


@router.post("/{namespace}/{flow_id}/deactivate", summary="Make triggers ignore the flow")
def deactivate(store: StoreDep, who: Writer, namespace: str, flow_id: str) -> Active:
    services.set_active(store, namespace, flow_id, False, time.time())
    return Active(active=False)


@router.get("/{namespace}/{flow_id}/next", summary="The next fire times of its schedules")
def next_times(
    store: StoreDep,
    who: Reader,
    namespace: str,
    flow_id: str,
    count: int = Query(default=5, ge=1, le=100),
) -> list[dict[str, Any]]:
    flow = services.find_flow(store, namespace, flow_id).flow
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
