"""What the pages' forms do: run a flow, kill, restart, replay, mark and save an
execution. Each is a POST with the session's CSRF token that answers with a redirect
(303) to the page showing the result, or the same page again with what was wrong."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ordo import definitions, services
from ordo.api.app import store_of
from ordo.errors import DefinitionError, OrdoError, UsageError, http_status
from ordo.model import RunOptions
from ordo.ui import auth
from ordo.ui.pages import MAX_ID, _labels, execution_context, flow_context, visible_execution
from ordo.ui.site import error_page, page

router = APIRouter(include_in_schema=False)


def _text(form: Any, name: str) -> str:
    values = form.getlist(name)
    value = values[-1] if values else ""
    return value.strip() if isinstance(value, str) else ""


@router.post("/flows/{namespace}/{flow_id}/run")
async def run(request: Request, viewer: auth.Actor, namespace: str, flow_id: str) -> Response:
    form = await request.form()
    return await run_in_threadpool(_run, request, viewer, namespace, flow_id, form)


def _run(
    request: Request, viewer: auth.Session, namespace: str, flow_id: str, form: Any
) -> Response:
    store = store_of(request)
    try:
        viewer.caller.find(namespace, f"flow {namespace}/{flow_id}")
        latest = services.find_flow(store, namespace, flow_id)
    except OrdoError as exc:
        return error_page(request, exc, viewer)
    given: dict[str, Any] = {}
    values: dict[str, Any] = {"__labels": _text(form, "labels"), "__queue": _text(form, "queue")}
    values.update({f"__{name}": _text(form, name) for name in RUN_OPTION_FIELDS})
    for spec in latest.flow.inputs:
        raw = _text(form, f"input.{spec.name}")
        values[spec.name] = raw
        if spec.type == "bool":
            given[spec.name] = raw in ("true", "on")
        elif raw:
            given[spec.name] = raw
    errors: dict[str, str] = {}
    try:
        labels = _labels(values["__labels"])
        options = _run_options(values)
        revision_text = _text(form, "revision")
        revision = latest
        if revision_text:
            if not revision_text.isdigit() or not 1 <= int(revision_text) <= MAX_ID:
                raise UsageError(f"revision: expected a revision number, found {revision_text!r}")
            revision = services.find_flow(store, namespace, flow_id, int(revision_text))
        execution_id = services.start(
            store,
            revision,
            given,
            time.time(),
            started_by=f"ui:{viewer.name}",
            labels=labels,
            dev=_text(form, "mode") == "dev",
            queue=_text(form, "queue") or None,
            options=options,
            scope=viewer.caller.namespaces,
        )
    except DefinitionError as exc:
        for p in exc.problems:
            key = (p.field or "").removeprefix("inputs.")
            errors[key if key in values else ""] = p.message
        message = None if set(errors) - {""} else "; ".join(errors.values())
        return _refused(request, viewer, namespace, flow_id, values, errors, message, 422)
    except OrdoError as exc:
        status = http_status(exc)
        return _refused(request, viewer, namespace, flow_id, values, {}, str(exc), status)
    return RedirectResponse(f"/executions/{execution_id}", status_code=303)


#: The run form's "run with options" fields beside labels, queue and revision.
RUN_OPTION_FIELDS = ("retry_attempts", "retry_delay", "retry_backoff", "timeout", "notify")


def _run_options(values: dict[str, Any]) -> RunOptions:
    """The run form's retry, timeout and notify fields (empty: the flow's own)."""
    retry: dict[str, Any] = {}
    attempts, backoff = values["__retry_attempts"], values["__retry_backoff"]
    if attempts:
        if not attempts.isdigit():
            raise UsageError(f"retry attempts: expected a whole number, found {attempts!r}")
        retry["attempts"] = int(attempts)
    if values["__retry_delay"]:
        retry["delay"] = values["__retry_delay"]
    if backoff:
        try:
            retry["backoff"] = float(backoff)
        except ValueError:
            raise UsageError(f"retry backoff: expected a number, found {backoff!r}") from None
    targets = [t.strip() for t in values["__notify"].replace(";", "\n").splitlines() if t.strip()]
    return definitions.read_run_options(
        retry or None,
        values["__timeout"] or None,
        [definitions.notify_rule(t) for t in targets] or None,
    )


def _refused(
    request: Request,
    viewer: auth.Session,
    namespace: str,
    flow_id: str,
    values: dict[str, Any],
    errors: dict[str, str],
    message: str | None,
    status: int,
) -> Response:
    context = flow_context(
        store_of(request), namespace, flow_id, values=values, errors=errors, error=message
    )
    return page(request, "flow.html", viewer, status_code=status, **context)


async def _act(request: Request, viewer: auth.Session, execution_id: int, verb: str) -> Response:
    form = await request.form()
    return await run_in_threadpool(_do, request, viewer, execution_id, verb, form)


def _do(
    request: Request, viewer: auth.Session, execution_id: int, verb: str, form: Any
) -> Response:
    """Do ``verb`` with the form's fields; on success go to the execution it concerns."""
    store = store_of(request)
    now = time.time()
    target = execution_id
    try:
        visible_execution(store, execution_id, viewer)
        if verb == "kill":
            services.kill(store, execution_id, viewer.who, now)
        elif verb == "restart":
            services.restart(
                store,
                execution_id,
                now,
                from_task=_text(form, "from") or None,
                latest=_text(form, "latest") in ("true", "on"),
            )
        elif verb == "replay":
            task = _text(form, "from")
            if not task:
                raise UsageError("replay: choose the task to replay from")
            target = services.replay(store, execution_id, task, now)
        elif verb == "mark":
            services.mark(
                store,
                execution_id,
                _text(form, "task"),
                _text(form, "state"),
                viewer.who,
                now,
                _text(form, "reason") or None,
            )
        elif verb == "save":
            name = _text(form, "name")
            if not name:
                raise UsageError("save: a name is needed")
            services.save(store, execution_id, name, _text(form, "description") or None, now)
    except OrdoError as exc:
        try:
            context = execution_context(store, execution_id, error=str(exc), viewer=viewer)
        except OrdoError:
            return error_page(request, exc, viewer)
        return page(request, "execution.html", viewer, status_code=http_status(exc), **context)
    return RedirectResponse(f"/executions/{target}", status_code=303)


@router.post("/executions/{execution_id}/kill")
async def kill(request: Request, viewer: auth.Actor, execution_id: int) -> Response:
    return await _act(request, viewer, execution_id, "kill")


@router.post("/executions/{execution_id}/restart")
async def restart(request: Request, viewer: auth.Actor, execution_id: int) -> Response:
    return await _act(request, viewer, execution_id, "restart")


@router.post("/executions/{execution_id}/replay")
async def replay(request: Request, viewer: auth.Actor, execution_id: int) -> Response:
    return await _act(request, viewer, execution_id, "replay")


@router.post("/executions/{execution_id}/mark")
async def mark(request: Request, viewer: auth.Actor, execution_id: int) -> Response:
    return await _act(request, viewer, execution_id, "mark")


@router.post("/executions/{execution_id}/save")
async def save(request: Request, viewer: auth.Actor, execution_id: int) -> Response:
    return await _act(request, viewer, execution_id, "save")
