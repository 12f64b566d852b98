"""The pages people read: dashboard, flows, a flow (source, diff, DAG, run form),
executions, an execution (DAG, timeline, task runs, logs), workers, connections, tokens.
Each has a stable URL; the parts that change live are also served alone for htmx."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from markupsafe import escape
from msgspec import Struct

from ordo import views
from ordo.api import streams
from ordo.api.app import Stores, not_found, store_of
from ordo.api.flows import flow_summary
from ordo.api.streams import EventStream
from ordo.authoring import read_only_reason
from ordo.errors import OrdoError, UsageError
from ordo.model import State
from ordo.store import Store
from ordo.store.records import ExecutionRow, Revision, TaskRunRow
from ordo.triggers.scheduler import next_fire_times
from ordo.ui import auth, drawing
from ordo.ui.site import error_page, mark, page

router = APIRouter(include_in_schema=False)
MAX_ID = 2**63 - 1
PAGE = 50
LOG_PAGE = 2000
RUNS_SHOWN = 200  # task runs an execution's page lists, then "show more"
DRAWN = 300  # tasks up to which an execution's page draws its DAG and offers pick lists
DAY = 86400.0


def _labels(text: str | None) -> dict[str, str]:
    """``key=value`` pairs separated by commas or new lines."""
    found = {}
    for part in (text or "").replace("\n", ",").split(","):
        if part.strip():
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"label {part.strip()!r}: expected key=value")
            found[key.strip()] = value.strip()
    return found


# -- dashboard ---------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, viewer: auth.Viewer, part: bool = False) -> HTMLResponse:
    store = store_of(request)
    seen = mark(store)
    now = time.time()
    scope = viewer.namespaces
    created = store.states_since(now - DAY, scope)
    counts: dict[str, int] = {}
    for _, state in created:
        counts[state.value] = counts.get(state.value, 0) + 1
    context: dict[str, Any] = {
        "counts": counts,
        "total": len(created),
        "chart": drawing.per_hour(created, now),
        "running": store.list_executions(state=State.RUNNING, limit=20, namespaces=scope),
        "failures": store.list_executions(state=State.FAILED, limit=10, namespaces=scope),
        "states": [s.value for s in drawing.STATE_ORDER],
        "seen": seen,
    }
    name = "_dashboard.html" if part else "dashboard.html"
    return page(request, name, viewer, **context)


# -- flows -------------------------------------------------------------------------------
@router.get("/flows", response_class=HTMLResponse)
def flows(
    request: Request,
    viewer: auth.Viewer,
    q: str = "",
    namespace: str = "",
    label: str = "",
) -> HTMLResponse:
    store = store_of(request)
    now = time.time()
    try:
        wanted = _labels(label)
    except UsageError as exc:
        return error_page(request, exc, viewer)
    flags = store.flow_flags()
    revisions = [r for r in store.list_flows() if viewer.caller.sees(r.namespace)]
    namespaces = sorted({r.namespace for r in revisions})
    shown = [
        r
        for r in revisions
        if (not namespace or r.namespace == namespace)
        and (not q or q.lower() in f"{r.flow_id} {r.flow.description}".lower())
        and all(r.flow.labels.get(k) == v for k, v in wanted.items())
    ]
    recent = store.recent_outcomes([(r.namespace, r.flow_id) for r in shown], 20)
    rows = []
    for r in shown:
        summary = flow_summary(store, r, flags.get((r.namespace, r.flow_id), True))
        rows.append(
            {
                **summary,
                "next": _next_time(r, now),
                "strip": list(reversed(recent[(r.namespace, r.flow_id)])),
            }
        )
    return page(
        request,
        "flows.html",
        viewer,
        rows=rows,
        q=q,
        namespace=namespace,
        label=label,
        namespaces=namespaces,
    )


def _next_time(revision: Revision, now: float) -> float | None:
    times = [
        t
        for trigger in revision.flow.triggers
        if trigger.type == "schedule"
        for t in next_fire_times(trigger, now, 1)
    ]
    return min(times, default=None)


@router.get("/flows/{namespace}/{flow_id}", response_class=HTMLResponse)
def flow_page(
    request: Request,
    viewer: auth.Viewer,
    namespace: str,
    flow_id: str,
    revision: int | None = Query(default=None, ge=1, le=MAX_ID),
    diff_from: int | None = Query(default=None, ge=1, le=MAX_ID),
    diff_to: int | None = Query(default=None, ge=1, le=MAX_ID),
    from_execution: int | None = Query(default=None, alias="from", ge=1, le=MAX_ID),
) -> HTMLResponse:
    store = store_of(request)
    try:
        viewer.caller.find(namespace, f"flow {namespace}/{flow_id}")
        context = flow_context(
            store, namespace, flow_id, revision, diff_from, diff_to, from_execution
        )
    except OrdoError as exc:
        return error_page(request, exc, viewer)
    return page(request, "flow.html", viewer, **context)


def flow_context(
    store: Store,
    namespace: str,
    flow_id: str,
    revision: int | None = None,
    diff_from: int | None = None,
    diff_to: int | None = None,
    from_execution: int | None = None,
    *,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """What the flow page shows; ``values`` and ``errors`` refill a run form that was
    refused."""
    latest = store.find_flow(namespace, flow_id)
    if latest is None:
        raise not_found(f"flow {namespace}/{flow_id}")
    shown = store.find_flow(namespace, flow_id, revision) if revision else latest
    if shown is None:
        raise not_found(f"flow {namespace}/{flow_id} revision {revision}")
    revisions = store.revisions(namespace, flow_id, 200)
    diff = None
    if diff_from and diff_to:
        diff = _diff(store, namespace, flow_id, diff_from, diff_to)
    now = time.time()
    key = f"{namespace}/{flow_id}"
    recent = store.recent_outcomes([(namespace, flow_id)], 50)[(namespace, flow_id)]
    saved = store.list_executions(flow=key, saved=True, limit=100)
    prefill: dict[str, Any] = {}
    labels_text = ""
    if values is None and from_execution is not None:
        source = store.get_execution(from_execution)
        if (source.namespace, source.flow_id) != (namespace, flow_id):
            raise UsageError(
                f"execution {from_execution} is of {source.namespace}/{source.flow_id}, "
                f"not of {namespace}/{flow_id}"
            )
        prefill = dict(source.inputs)
        labels_text = ", ".join(f"{k}={v}" for k, v in source.labels.items())
    flow = shown.flow
    triggers = []
    for t in flow.triggers:
        detail = t.to_dict()
        detail.pop("key", None)
        entry: dict[str, Any] = {"id": t.id, "type": t.type, "detail": detail}
        if t.type == "schedule":
            entry["next"] = next_fire_times(t, now, 3)
        triggers.append(entry)
    return {
        "flow": flow,
        "revision": shown,
        "latest": latest,
        "active": store.flow_active(namespace, flow_id),
        "source": store.revision_source(shown.id),
        "scripts": store.revision_scripts(shown.id),
        "revisions": revisions,
        "diff": diff,
        "diff_from": diff_from,
        "diff_to": diff_to,
        "dag": drawing.dag(latest.flow.tasks if revision is None else flow.tasks),
        "triggers": triggers,
        "chart": drawing.durations([(o[0], o[1], o[3], o[4]) for o in recent]),
        "recent": recent[:10],
        "saved": saved,
        "from_execution": from_execution,
        "inputs": _input_fields(latest, values if values is not None else prefill),
        "errors": errors or {},
        "error": error,
        "labels_text": labels_text if values is None else values.get("__labels", ""),
        "queue": "" if values is None else values.get("__queue", ""),
        "read_only_reason": read_only_reason(store, namespace, flow_id),
        "stored_schedules": store.list_schedules(namespace, flow_id),
        "run_options": {}
        if values is None
        else {k[2:]: v for k, v in values.items() if k.startswith("__") and v},
    }


def _diff(store: Store, namespace: str, flow_id: str, a: int, b: int) -> list[tuple[str, str]]:
    """:func:`ordo.views.revision_diff` as (kind, line): kind is ``add``, ``del``,
    ``hunk``, ``head`` or ``same``."""
    lines = []
    for line in views.revision_diff(store, namespace, flow_id, a, b).splitlines():
        if line.startswith("@@"):
            kind = "hunk"
        elif line.startswith(("---", "+++")):
            kind = "head"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        lines.append((kind, line))
    return lines


WIDGETS = {"string": "text", "int": "number", "float": "number", "bool": "checkbox"}


def _input_fields(revision: Revision, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run form's fields: the input's type decides the widget."""
    fields = []
    for spec in revision.flow.inputs:
        value = values.get(spec.name, spec.default)
        widget = WIDGETS.get(spec.type, "json")
        shown: str | bool
        if widget == "json":
            shown = (
                value
                if isinstance(value, str) and spec.name in values
                else ("" if value is None else json.dumps(value, indent=2))
            )
        elif widget == "checkbox":
            shown = value in (True, "true", "on", "1", "yes")
        else:
            shown = "" if value is None else str(value)
        fields.append(
            {
                "name": spec.name,
                "type": spec.type,
                "widget": widget,
                "value": shown,
                "required": spec.required and spec.default is None,
                "description": spec.description,
                "step": "any" if spec.type == "float" else "1",
            }
        )
    return fields


# -- executions --------------------------------------------------------------------------
def _since(value: str) -> float | None:
    """``1h``, ``24h``, ``7d`` ... as a time that far back, or None for any time."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if not value:
        return None
    if value[:-1].isdigit() and value[-1] in units:
        return time.time() - int(value[:-1]) * units[value[-1]]
    raise UsageError(f"since: expected a time span like 1h, 24h or 7d, found {value!r}")


def _state_of(value: str) -> State | None:
    if not value:
        return None
    try:
        return State(value.upper())
    except ValueError:
        raise UsageError(f"state: unknown state {value!r}") from None


def _tristate(value: str) -> bool | None:
    return {"yes": True, "no": False}.get(value)


@router.get("/executions", response_class=HTMLResponse)
def executions(
    request: Request,
    viewer: auth.Viewer,
    flow: str = "",
    state: str = "",
    label: str = "",
    since: str = "",
    saved: str = "",
    dev: str = "",
    kind: str = "",
    cursor: int | None = Query(default=None, ge=1, le=MAX_ID),
    part: bool = False,
) -> HTMLResponse:
    store = store_of(request)
    filters = {
        "flow": flow,
        "state": state,
        "label": label,
        "since": since,
        "saved": saved,
        "dev": dev,
        "kind": kind,
    }
    seen = mark(store)
    try:
        rows, next_cursor = list_page(store, filters, cursor, viewer.namespaces)
    except UsageError as exc:
        return error_page(request, exc, viewer)
    context: dict[str, Any] = {
        "rows": rows,
        "next_cursor": next_cursor,
        "cursor": cursor,
        "filters": filters,
        "seen": seen,
        "query": {k: v for k, v in filters.items() if v},
        "states": [s.value for s in State],
        "flows": sorted(
            f"{r.namespace}/{r.flow_id}"
            for r in store.list_flows()
            if viewer.caller.sees(r.namespace)
        ),
    }
    return page(request, "_executions_rows.html" if part else "executions.html", viewer, **context)


def list_page(
    store: Store,
    filters: Mapping[str, str],
    cursor: int | None,
    namespaces: tuple[str, ...] | None = None,
) -> tuple[list[ExecutionRow], int | None]:
    """One page of executions, newest first, and the cursor of the next."""
    rows = store.list_executions(
        flow=filters.get("flow") or None,
        state=_state_of(filters.get("state", "")),
        saved=_tristate(filters.get("saved", "")),
        dev=_tristate(filters.get("dev", "")),
        kind=(filters.get("kind") or "").upper() or None,
        since=_since(filters.get("since", "")),
        labels=_labels(filters.get("label")),
        namespaces=namespaces,
        limit=PAGE,
        before=cursor,
    )
    return rows, rows[-1].id if len(rows) == PAGE else None


@router.get("/executions/{execution_id}", response_class=HTMLResponse)
def execution_page(
    request: Request,
    viewer: auth.Viewer,
    execution_id: int,
    part: bool = False,
    runs: int = Query(default=RUNS_SHOWN, ge=1, le=1_000_000, description="task runs shown"),
    state: str = Query(default="", max_length=20, description="only task runs in this state"),
    task: str = Query(default="", max_length=200, description="only task runs whose name has"),
) -> HTMLResponse:
    store = store_of(request)
    try:
        shown = RunFilter(runs, _state_of(state), task.strip())
        context = execution_context(store, execution_id, viewer=viewer, shown=shown)
    except OrdoError as exc:
        return error_page(request, exc, viewer)
    return page(request, "_execution_live.html" if part else "execution.html", viewer, **context)


class RunFilter(Struct, frozen=True):
    """Which task runs an execution's page lists: the first ``limit`` of those in
    ``state`` (any when None) whose label contains ``text``."""

    limit: int = RUNS_SHOWN
    state: State | None = None
    text: str = ""

    def keeps(self, run: TaskRunRow) -> bool:
        return (self.state is None or run.state is self.state) and self.text in run.label

    def query(self, limit: int) -> str:
        return urlencode(
            {"runs": limit, "state": self.state.value if self.state else "", "task": self.text}
        )


def execution_context(
    store: Store,
    execution_id: int,
    error: str | None = None,
    *,
    viewer: auth.Session,
    shown: RunFilter | None = None,
) -> dict[str, Any]:
    if not 1 <= execution_id <= MAX_ID:
        raise not_found(f"execution {execution_id}")
    seen = mark(store, execution_id)  # before the data: a later change is sent at once
    ex = visible_execution(store, execution_id, viewer)
    flow = store.flow_of(ex.revision_id)
    runs = views.in_order(store.task_runs(execution_id))
    attempts = store.attempts(execution_id)
    outputs = store.outputs(execution_id)
    metrics = store.metrics(execution_id)
    checks = store.checks(execution_id)
    now = time.time()
    tops: dict[str, TaskRunRow] = {}
    items: dict[str, list[TaskRunRow]] = {}
    for r in runs:
        if r.fork_of is None and r.parent_run_id is None:
            tops.setdefault(r.task_id, r)
        elif r.fork_of is not None:
            items.setdefault(r.task_id, []).append(r)
    details = {task_id: drawing.items_detail(its) for task_id, its in items.items()}
    for task_id, r in tops.items():
        if task_id not in details and r.attempts > 1:
            details[task_id] = f"{r.attempts} attempts"
    by_run: dict[int, list[Any]] = {}
    for a in attempts:
        by_run.setdefault(a.task_run_id, []).append(a)
    checks_of: dict[int, list[Any]] = {}
    for c in checks:
        checks_of.setdefault(c.attempt_id, []).append(c)
    metrics_of: dict[int, list[Any]] = {}
    for m in metrics:
        metrics_of.setdefault(m.task_run_id, []).append(m)
    shown = shown or RunFilter()
    kept = [r for r in runs if shown.keeps(r)]
    listed = kept[: shown.limit]
    table = [
        {
            "run": r,
            "attempts": [
                {"row": a, "checks": checks_of.get(a.id, [])} for a in by_run.get(r.id, [])
            ],
            "outputs": views.run_outputs(outputs, r),
            "metrics": metrics_of.get(r.id, []),
        }
        for r in listed
    ]
    states = {k: v.state for k, v in tops.items()}
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.state.value] = counts.get(r.state.value, 0) + 1
    return {
        "ex": ex,
        "flow": flow,
        "revision": store.get_revision(ex.revision_id),
        # a drawing of thousands of tasks is megabytes nobody can read: counts instead
        "dag": drawing.dag(flow.tasks, states, details) if len(flow.tasks) <= DRAWN else None,
        "counts": counts,
        "timeline": drawing.timeline(listed, attempts, now),
        "table": table,
        "shown": shown,
        "runs_total": len(runs),
        "runs_kept": len(kept),
        "more": shown.query(shown.limit + RUNS_SHOWN) if len(kept) > shown.limit else None,
        "states": [s.value for s in State],
        # a choice among thousands of tasks is typed, not picked from a list
        "tasks": [t.id for t in flow.tasks] if len(flow.tasks) <= DRAWN else None,
        "labels": [r.label for r in runs] if len(runs) <= DRAWN else None,
        "children": store.children(execution_id),
        "calls": store.calls(execution_id),
        "error": error,
        "now": now,
        "seen": seen,
    }


def visible_execution(store: Store, execution_id: int, viewer: auth.Session) -> ExecutionRow:
    """The execution, if the viewer's token may see its namespace; NotFound (as if it
    did not exist) otherwise."""
    if not 1 <= execution_id <= MAX_ID:
        raise not_found(f"execution {execution_id}")
    ex = store.get_execution(execution_id)
    viewer.caller.find(ex.namespace, f"execution {execution_id}")
    return ex


# -- logs --------------------------------------------------------------------------------
@router.get("/executions/{execution_id}/logs", response_class=HTMLResponse)
def logs_panel(
    request: Request,
    viewer: auth.Viewer,
    execution_id: int,
    attempt: int | None = Query(default=None, ge=1, le=MAX_ID),
) -> HTMLResponse:
    """The log of one attempt (or the whole execution): lines so far, then live ones."""
    store = store_of(request)
    try:
        ex, chosen = _log_scope(store, execution_id, attempt, viewer)
    except OrdoError as exc:
        return error_page(request, exc, viewer)
    lines = store.logs(execution_id, attempt_ids=chosen, limit=LOG_PAGE)
    label = "the whole execution"
    names: dict[int, str] = {}
    if attempt is not None:
        runs = {r.id: r for r in store.task_runs(execution_id)}
        a = next(a for a in store.attempts(execution_id) if a.id == attempt)
        label = f"{runs[a.task_run_id].label}, attempt {a.number}"
    else:
        names = attempt_names(store, execution_id)
    return page(
        request,
        "_logs.html",
        viewer,
        ex=ex,
        attempt=attempt,
        label=label,
        lines=lines,
        names=names,
        last=lines[-1].id if lines else 0,
        more=len(lines) == LOG_PAGE,
    )


def _log_scope(
    store: Store, execution_id: int, attempt: int | None, viewer: auth.Session
) -> tuple[ExecutionRow, list[int] | None]:
    """The execution whose log is asked for, and the attempt ids it is limited to (None:
    all); NotFound for an execution the viewer may not see or an attempt not of it."""
    ex = visible_execution(store, execution_id, viewer)
    if attempt is None:
        return ex, None
    if attempt not in {a.id for a in store.attempts(execution_id)}:
        raise not_found(f"attempt {attempt} of execution {execution_id}")
    return ex, [attempt]


@router.get("/ui/logs")
def follow_logs(
    request: Request,
    viewer: auth.Viewer,
    execution: int = Query(ge=1, le=MAX_ID),
    attempt: int | None = Query(default=None, ge=1, le=MAX_ID),
    after: int = Query(default=0, ge=0, le=MAX_ID),
) -> Response:
    """New log lines as ``line`` events (HTML list items), then ``end`` when the attempt
    (or execution) has ended and every line is sent."""
    store = store_of(request)
    try:
        chosen = _log_scope(store, execution, attempt, viewer)[1]
    except OrdoError as exc:
        return error_page(request, exc, viewer)
    ticket = request.app.state.streams.open(viewer.caller.name)
    return EventStream(_follow(request.app.state.stores, execution, chosen, after), ticket)


async def _follow(
    stores: Stores, execution: int, chosen: list[int] | None, after: int
) -> AsyncIterator[str]:
    """Async: between looks it sleeps, holding no thread and no connection. The whole
    execution's log (``chosen`` None) names ``task#attempt`` on every line."""
    names: dict[int, str] | None = {} if chosen is None else None

    def look(store: Store) -> tuple[bool, list[Any], dict[int, str] | None]:
        ended = _ended(store, execution, chosen)
        lines = store.logs(execution, attempt_ids=chosen, after_id=after, limit=500)
        fresh = None  # a new attempt since the last look: names read again
        if names is not None and any(x.attempt_id not in names for x in lines):
            fresh = attempt_names(store, execution)
        return ended, lines, fresh

    pauses = streams.pauses()
    while True:
        ended, lines, fresh = await stores.look(look)
        if fresh is not None:
            names = fresh
        if lines:
            after = lines[-1].id
            yield streams.event("line", "".join(_line_html(x, names) for x in lines))
            pauses = streams.pauses()
            continue
        if ended:
            yield streams.event("end", "ended")
            return
        await asyncio.sleep(next(pauses))


def _ended(store: Store, execution: int, chosen: list[int] | None) -> bool:
    if chosen is None:
        return store.get_execution(execution).state.terminal
    return all(a.ended_at is not None for a in store.attempts(execution) if a.id in chosen)


def _one_line(html: str) -> str:
    """A line's CR and LF as character references: kept, and no line break in the
    event that carries it."""
    return html.replace("\r", "&#13;").replace("\n", "&#10;")


def attempt_names(store: Store, execution_id: int) -> dict[int, str]:
    """``task#attempt`` (``work[2]#1``) of each attempt of the execution, by attempt id:
    the whole execution's log names the attempt on every line."""
    labels = {r.id: r.label for r in store.task_runs(execution_id)}
    return {
        a.id: f"{labels.get(a.task_run_id, '?')}#{a.number}" for a in store.attempts(execution_id)
    }


def _line_html(x: Any, names: Mapping[int, str] | None = None) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(x.at))
    who = ""
    if names is not None:
        who = f'<span class="who">{escape(names.get(x.attempt_id, "?"))}</span> '
    return (
        f'<li class="{x.stream}" data-id="{x.id}"><time>{stamp}</time> '
        f"{who}<span>{_one_line(str(escape(x.line)))}</span></li>"
    )


@router.get("/executions/{execution_id}/history", response_class=HTMLResponse)
def history_panel(request: Request, viewer: auth.Viewer, execution_id: int) -> HTMLResponse:
    """Every state change of the execution and its task runs, with time and reason."""
    store = store_of(request)
    try:
        ex = visible_execution(store, execution_id, viewer)
        rows = views.state_history(store, execution_id)
    except OrdoError as exc:
        return error_page(request, exc, viewer)
    return page(request, "_history.html", viewer, ex=ex, rows=rows)


@router.get("/executions/{execution_id}/logs.txt")
def download_logs(
    request: Request,
    viewer: auth.Viewer,
    execution_id: int,
    attempt: int | None = Query(default=None, ge=1, le=MAX_ID),
) -> Response:
    store = store_of(request)
    try:
        chosen = _log_scope(store, execution_id, attempt, viewer)[1]
    except OrdoError as exc:
        return error_page(request, exc, viewer)
    stores: Stores = request.app.state.stores
    name = f"execution-{execution_id}" + (f"-attempt-{attempt}" if attempt else "") + ".log"

    def text() -> Iterator[str]:
        after = 0
        while True:
            lines = stores.run(functools.partial(_page, execution_id, chosen, after))
            if not lines:
                return
            after = lines[-1].id
            yield "".join(
                f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(x.at))} {x.stream} {x.line}\n"
                for x in lines
            )

    return StreamingResponse(
        text(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _page(execution_id: int, chosen: list[int] | None, after: int, store: Store) -> list[Any]:
    return store.logs(execution_id, attempt_ids=chosen, after_id=after)


# -- the rest ----------------------------------------------------------------------------
@router.get("/workers", response_class=HTMLResponse)
def workers(request: Request, viewer: auth.Viewer) -> HTMLResponse:
    now = time.time()
    rows = store_of(request).list_workers(since=now - 3600)
    return page(request, "workers.html", viewer, rows=rows, now=now)


@router.get("/connections", response_class=HTMLResponse)
def connections(request: Request, viewer: auth.Viewer) -> HTMLResponse:
    rows = [views.connection_dict(c) for c in store_of(request).list_connections()]
    return page(request, "connections.html", viewer, rows=rows)


@router.get("/tokens", response_class=HTMLResponse)
def tokens(request: Request, viewer: auth.Viewer) -> HTMLResponse:
    rows = store_of(request).list_tokens()
    if viewer.namespaces is not None:  # a token limited to namespaces sees only itself
        rows = [t for t in rows if t.id == viewer.token_id]
    return page(request, "tokens.html", viewer, rows=rows)
