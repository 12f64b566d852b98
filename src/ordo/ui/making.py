"""Flows, packages and schedules made in the browser: the flow editor (validated as one
types, through the same checks as ``ordo validate``), the package form (the Executor's
fields and uploads) and the schedule helper (*Schedule…* on a flow's page, with the
next five fire times as one types). Every change is a POST with the session's CSRF
token, within the token's namespaces, refused to read-only tokens."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from ordo import authoring, services
from ordo.api.app import store_of
from ordo.api.packages import form_fields, read_uploads
from ordo.errors import DefinitionError, OrdoError, UsageError, http_status
from ordo.store import Store
from ordo.ui import auth
from ordo.ui.site import error_page, page

router = APIRouter(include_in_schema=False)

NEW_FLOW = """id: hello
namespace: default
description: what this flow does
tasks:
  - id: greet
    type: shell
    command: echo hello
"""


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _problems(exc: DefinitionError) -> list[dict[str, Any]]:
    return [
        {"line": p.line, "column": p.column, "field": p.field, "message": p.message, "text": str(p)}
        for p in exc.problems
    ]


# -- the flow editor -------------------------------------------------------------------
@router.get("/flows/new", response_class=HTMLResponse)
def new_flow(request: Request, viewer: auth.Viewer) -> HTMLResponse:
    return page(request, "editor.html", viewer, text=NEW_FLOW, editing=None, problems=[])


@router.get("/flows/{namespace}/{flow_id}/edit", response_class=HTMLResponse)
def edit_flow(request: Request, viewer: auth.Viewer, namespace: str, flow_id: str) -> Response:
    store = store_of(request)
    try:
        viewer.caller.find(namespace, f"flow {namespace}/{flow_id}")
        latest = services.find_flow(store, namespace, flow_id)
        reason = authoring.read_only_reason(store, namespace, flow_id)
        if reason is not None:
            raise UsageError(f"flow {namespace}/{flow_id} {reason}")
    except OrdoError as exc:
        return error_page(request, exc, viewer)
    if _is_package(store, latest.id):
        return RedirectResponse(f"/flows/new-package?edit={namespace}/{flow_id}", status_code=303)
    text = store.revision_source(latest.id)
    return page(
        request, "editor.html", viewer, text=text, editing=(namespace, flow_id), problems=[]
    )


def _is_package(store: Store, revision_id: int) -> bool:
    """Whether the revision was stored from a package (its source: a JSON summary)."""
    try:
        source = json.loads(store.revision_source(revision_id))
    except ValueError:
        return False
    return isinstance(source, dict) and "package" in source


@router.post("/flows/validate", response_class=HTMLResponse)
async def validate(request: Request, viewer: auth.Actor) -> HTMLResponse:
    """The editor's messages (a fragment for htmx): what ``ordo validate`` says."""
    form = await request.form()
    text = _text(form, "text")
    problems: list[dict[str, Any]] = []
    flow = None
    try:
        flow = await run_in_threadpool(authoring.check_text, text)
    except DefinitionError as exc:
        problems = _problems(exc)
    return page(request, "_problems.html", viewer, problems=problems, flow=flow)


@router.post("/flows/new")
async def save_flow(request: Request, viewer: auth.Actor) -> Response:
    form = await request.form()
    return await run_in_threadpool(_save_flow, request, viewer, form)


def _save_flow(request: Request, viewer: auth.Session, form: FormData) -> Response:
    store = store_of(request)
    text = _text(form, "text")
    editing = None
    if _text(form, "editing"):
        namespace, _, flow_id = _text(form, "editing").partition("/")
        editing = (namespace, flow_id)
    try:
        if editing is not None:
            viewer.caller.find(editing[0], f"flow {editing[0]}/{editing[1]}")
        revision = authoring.save_text(
            store, text, viewer.name, time.time(), editing, viewer.caller.may_use
        )
    except DefinitionError as exc:
        return page(
            request,
            "editor.html",
            viewer,
            status_code=422,
            text=text,
            editing=editing,
            problems=_problems(exc),
        )
    except OrdoError as exc:
        return page(
            request,
            "editor.html",
            viewer,
            status_code=http_status(exc),
            text=text,
            editing=editing,
            problems=[],
            error=str(exc),
        )
    return RedirectResponse(f"/flows/{revision.namespace}/{revision.flow_id}", status_code=303)


# -- the package form ------------------------------------------------------------------
@router.get("/flows/new-package", response_class=HTMLResponse)
def new_package(request: Request, viewer: auth.Viewer, edit: str = Query(default="")) -> Response:
    values: dict[str, Any] = {"namespace": "default", "allow_manual": True, "active": True}
    files: dict[str, str | None] = {}
    if edit:
        store = store_of(request)
        namespace, _, flow_id = edit.partition("/")
        try:
            viewer.caller.find(namespace, f"flow {edit}")
            latest = services.find_flow(store, namespace, flow_id)
            reason = authoring.read_only_reason(store, namespace, flow_id)
            if reason is not None:
                raise UsageError(f"flow {edit} {reason}")
            if not _is_package(store, latest.id):
                raise UsageError(f"flow {edit} is not a package: edit it in the editor")
        except OrdoError as exc:
            return error_page(request, exc, viewer)
        source = json.loads(store.revision_source(latest.id))
        flow = latest.flow
        sql = next((t for t in flow.tasks if t.type == "sql"), None)
        known = {
            "name": flow.id,
            "namespace": flow.namespace,
            "description": flow.description,
            "labels": dict(flow.labels),
            "allow_manual": flow.allow_manual,
            "active": store.flow_active(namespace, flow_id),
            "connection": str(sql.spec.get("connection", "")) if sql else "",
        }
        values = _form_values({**known, **(source.get("form") or {})})
        files = {n: t for n, t in store.revision_scripts(latest.id).items() if n != "flow.yaml"}
    return _package_page(request, viewer, values, edit, files)


def _form_values(form: dict[str, Any]) -> dict[str, Any]:
    values = dict(form)
    values["labels"] = ", ".join(f"{k}={v}" for k, v in (form.get("labels") or {}).items())
    values["events"] = ", ".join(form.get("events") or [])
    return values


def _package_page(
    request: Request,
    viewer: auth.Session,
    values: dict[str, Any],
    edit: str,
    files: dict[str, str | None],
    status: int = 200,
    problems: list[str] | None = None,
) -> HTMLResponse:
    return page(
        request,
        "package.html",
        viewer,
        status_code=status,
        values=values,
        edit=edit,
        files=files,
        processed=authoring.PROCESSED,
        problems=problems or [],
    )


@router.post("/flows/new-package")
async def save_package(request: Request, viewer: auth.Actor) -> Response:
    limit: int = request.app.state.max_upload
    raw: dict[str, Any] = {}
    edit = ""
    try:
        form = await request.form(max_files=authoring.MAX_ZIP_ENTRIES, max_fields=100)
        edit = _text(form, "edit")
        raw = {k: v for k, v in form.items() if isinstance(v, str)}
        raw["allow_manual"] = "allow_manual" in form
        raw["active"] = "active" in form
        files, _archive = await read_uploads(form, limit)
        package = form_fields(form)
    except OrdoError as exc:
        return _package_page(request, viewer, raw, edit, {}, http_status(exc), [str(exc)])
    return await run_in_threadpool(_save_package, request, viewer, package, files, raw, edit)


def _save_package(
    request: Request,
    viewer: auth.Session,
    package: authoring.PackageForm,
    files: dict[str, bytes],
    raw: dict[str, Any],
    edit: str,
) -> Response:
    store = store_of(request)
    editing = None
    if edit:
        namespace, _, flow_id = edit.partition("/")
        editing = (namespace, flow_id)
    try:
        if editing is not None:
            viewer.caller.find(editing[0], f"flow {edit}")
        revision = authoring.save_package(
            store,
            files,
            viewer.name,
            time.time(),
            form=package,
            limit=request.app.state.max_upload,
            editing=editing,
            scope=viewer.caller.may_use,
        )
    except DefinitionError as exc:
        messages = [str(p) for p in exc.problems]
        return _package_page(request, viewer, raw, edit, {}, 422, messages)
    except OrdoError as exc:
        return _package_page(request, viewer, raw, edit, {}, http_status(exc), [str(exc)])
    return RedirectResponse(f"/flows/{revision.namespace}/{revision.flow_id}", status_code=303)


# -- the schedule helper ----------------------------------------------------------------
@router.get("/flows/{namespace}/{flow_id}/schedules", response_class=HTMLResponse)
def schedules(
    request: Request,
    viewer: auth.Viewer,
    namespace: str,
    flow_id: str,
    edit: int | None = Query(default=None, ge=1, le=2**63 - 1),
) -> Response:
    store = store_of(request)
    try:
        viewer.caller.find(namespace, f"flow {namespace}/{flow_id}")
        context = _schedules_context(store, namespace, flow_id, edit)
    except OrdoError as exc:
        return error_page(request, exc, viewer)
    return page(request, "schedules.html", viewer, **context)


def _schedules_context(
    store: Store,
    namespace: str,
    flow_id: str,
    edit: int | None,
    values: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    latest = services.find_flow(store, namespace, flow_id)
    rows = store.list_schedules(namespace, flow_id)
    now = time.time()
    listed = [
        {
            "row": r,
            "next": services.next_schedule_times(r.cron, r.timezone, now, 3) if r.active else [],
        }
        for r in rows
    ]
    if values is None:
        values = {"mode": "cron", "cron": "", "every": "", "timezone": "UTC", "active": True}
        values["inputs"] = {
            i.name: "" if i.default is None else _shown(i.default) for i in latest.flow.inputs
        }
        current = next((r for r in rows if r.id == edit), None)
        if current is not None:
            values.update(
                cron=current.cron,
                timezone=current.timezone,
                active=current.active,
                inputs={k: _shown(v) for k, v in current.inputs.items()},
            )
    return {
        "flow": latest.flow,
        "schedules": listed,
        "edit": edit,
        "values": values,
        "error": error,
        "preview": _preview(values),
    }


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _preview(values: dict[str, Any]) -> dict[str, Any]:
    """The next five fire times of what the helper holds, or why there are none."""
    try:
        expression = _expression(values)
        if not expression:
            return {"times": [], "error": None, "cron": ""}
        times = services.next_schedule_times(
            expression, values.get("timezone") or "UTC", time.time()
        )
    except OrdoError as exc:
        return {"times": [], "error": str(exc), "cron": ""}
    return {"times": times, "error": None, "cron": expression}


def _expression(values: dict[str, Any]) -> str:
    if values.get("mode") == "every":
        every = str(values.get("every") or "").strip()
        if not every:
            return ""
        if not every.isdigit() or int(every) < 1:
            raise UsageError(f"every: expected a whole number of minutes, found {every!r}")
        return services.every_to_cron(int(every))
    return str(values.get("cron") or "").strip()


def _values(form: FormData) -> dict[str, Any]:
    inputs = {
        k.removeprefix("input."): v
        for k, v in form.items()
        if k.startswith("input.") and isinstance(v, str)
    }
    return {
        "mode": _text(form, "mode") or "cron",
        "cron": _text(form, "cron").strip(),
        "every": _text(form, "every").strip(),
        "timezone": _text(form, "timezone").strip() or "UTC",
        "active": "active" in form,
        "inputs": inputs,
    }


@router.post("/flows/{namespace}/{flow_id}/schedules/next", response_class=HTMLResponse)
async def schedule_next(
    request: Request, viewer: auth.Viewer, namespace: str, flow_id: str
) -> HTMLResponse:
    """The next five fire times as the helper is filled in (a fragment for htmx; reads
    only, so a read-only session sees them too)."""
    form = await request.form()
    return page(request, "_next_times.html", viewer, preview=_preview(_values(form)))


@router.post("/flows/{namespace}/{flow_id}/schedules")
async def save_schedule(
    request: Request, viewer: auth.Actor, namespace: str, flow_id: str
) -> Response:
    form = await request.form()
    return await run_in_threadpool(_save_schedule, request, viewer, namespace, flow_id, form)


def _save_schedule(
    request: Request, viewer: auth.Session, namespace: str, flow_id: str, form: FormData
) -> Response:
    store = store_of(request)
    values = _values(form)
    edit_text = _text(form, "schedule")
    edit = int(edit_text) if edit_text.isdigit() else None
    try:
        viewer.caller.find(namespace, f"flow {namespace}/{flow_id}")
        latest = services.find_flow(store, namespace, flow_id)
        expression = _expression(values)
        if not expression:
            raise UsageError("cron: write a cron expression (or choose every N minutes)")
        declared = {i.name: i for i in latest.flow.inputs}
        inputs = {k: v for k, v in values["inputs"].items() if v != "" and k in declared}
        now = time.time()
        if edit is not None:
            if store.get_schedule(edit).flow_id != flow_id:
                raise UsageError(f"schedule {edit} is not of flow {namespace}/{flow_id}")
            services.change_schedule(
                store, edit, expression, values["timezone"], inputs, values["active"], now
            )
        else:
            services.add_schedule(
                store,
                namespace,
                flow_id,
                expression,
                values["timezone"],
                inputs,
                values["active"],
                f"ui:{viewer.name}",
                now,
            )
    except OrdoError as exc:
        context = _schedules_context(store, namespace, flow_id, edit, values, str(exc))
        return page(request, "schedules.html", viewer, status_code=http_status(exc), **context)
    return RedirectResponse(f"/flows/{namespace}/{flow_id}/schedules", status_code=303)


@router.post("/flows/{namespace}/{flow_id}/schedules/{schedule_id}/delete")
def delete_schedule(
    request: Request, viewer: auth.Actor, namespace: str, flow_id: str, schedule_id: int
) -> Response:
    store = store_of(request)
    try:
        viewer.caller.find(namespace, f"flow {namespace}/{flow_id}")
        if store.get_schedule(schedule_id).flow_id != flow_id:
            raise UsageError(f"schedule {schedule_id} is not of flow {namespace}/{flow_id}")
        services.remove_schedule(store, schedule_id)
    except OrdoError as exc:
        return error_page(request, exc, viewer)
    return RedirectResponse(f"/flows/{namespace}/{flow_id}/schedules", status_code=303)
