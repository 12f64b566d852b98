"""Stored things as plain JSON types: what ``--json`` prints and the API returns."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from ordo.errors import NotFound, UsageError
from ordo.model import State
from ordo.store import Store
from ordo.store.records import (
    AttemptRow,
    CheckRow,
    Connection,
    ExecutionRow,
    MetricRow,
    TaskRunRow,
)

T = TypeVar("T")


def in_order(runs: list[TaskRunRow]) -> list[TaskRunRow]:
    """Task runs in creation order, each for_each's items right after it and each
    handler's calls right after the handler."""
    return sorted(runs, key=lambda r: (r.fork_of or r.parent_run_id or r.id, r.id))


def execution_dict(e: ExecutionRow) -> dict[str, Any]:
    return {
        "id": e.id,
        "namespace": e.namespace,
        "flow": e.flow_id,
        "revision_id": e.revision_id,
        "state": e.state.value,
        "inputs": e.inputs,
        "labels": e.labels,
        "reason": e.reason,
        "created_at": e.created_at,
        "started_at": e.started_at,
        "ended_at": e.ended_at,
        "parent_id": e.parent_id,
        "original_id": e.original_id,
        "started_by": e.started_by,
        "queue": e.queue,
        "kind": e.kind,
        "options": dict(e.options) if e.options else None,
        "scope": list(e.scope) if e.scope is not None else None,
        "outputs": e.outputs,
        "dev": e.dev,
        "saved": None
        if e.saved_name is None
        else {"name": e.saved_name, "description": e.saved_description, "saved_at": e.saved_at},
    }


def attempt_dict(a: AttemptRow) -> dict[str, Any]:
    return {
        "id": a.id,
        "task_run_id": a.task_run_id,
        "number": a.number,
        "state": a.state.value,
        "started_at": a.started_at,
        "ended_at": a.ended_at,
        "exit_code": a.exit_code,
        "reason": a.reason,
        "error": a.error,
        "worker": a.worker_id,
        "cpu_seconds": a.cpu_seconds,
        "peak_rss_kb": a.peak_rss_kb,
    }


def metric_dict(m: MetricRow) -> dict[str, Any]:
    return {
        "task_run_id": m.task_run_id,
        "name": m.name,
        "kind": m.kind,
        "value": m.value,
        "tags": m.tags,
    }


def connection_dict(c: Connection) -> dict[str, Any]:
    """A connection with its credentials masked."""
    return {
        "name": c.name,
        "type": c.type,
        "config": c.masked(),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def group_by(items: Iterable[T], key: Callable[[T], Hashable]) -> dict[Hashable, list[T]]:
    """``items`` in lists by ``key``, in their order: one pass instead of one scan per key."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def execution_document(store: Store, execution_id: int) -> dict[str, Any]:
    """Everything about one execution as plain JSON types (``--json``, the API)."""
    ex = store.get_execution(execution_id)
    attempts = store.attempts(execution_id)
    outputs = store.outputs(execution_id)
    called = store.called_outputs(execution_id)  # each called task run's own
    metrics = store.metrics(execution_id)
    checks = store.checks(execution_id)
    # grouped once: each task run then finds its own in constant time (linear overall)
    checks_of = group_by(checks, lambda c: c.attempt_id)
    attempts_of = group_by(attempts, lambda a: a.task_run_id)
    metrics_of = group_by(metrics, lambda m: m.task_run_id)
    runs = []
    for r in in_order(store.task_runs(execution_id)):
        runs.append(
            {
                "id": r.id,
                "task": r.label,
                "fork_index": r.fork_index,
                "called_by": r.parent_run_id,
                "state": r.state.value,
                "reason": r.reason,
                "attempts": [
                    {**attempt_dict(a), "checks": [_check_dict(c) for c in checks_of.get(a.id, ())]}
                    for a in attempts_of.get(r.id, ())
                ],
                "outputs": called.get(r.id, {})
                if r.parent_run_id is not None
                else run_outputs(outputs, r),
                "metrics": [metric_dict(m) for m in metrics_of.get(r.id, ())],
                "started_at": r.started_at,
                "ended_at": r.ended_at,
            }
        )
    children = [
        {"id": c.id, "flow": c.flow_key, "state": c.state.value, "reason": c.reason}
        for c in store.children(execution_id)
    ]
    calls = [
        {"id": c.id, "flow": c.flow_key, "state": c.state.value, "reason": c.reason}
        for c in store.calls(execution_id)
    ]
    doc = {**execution_dict(ex), "children": children, "calls": calls, "task_runs": runs}
    doc["waiting_for"] = _waiting_for(store, ex)
    return doc


def _waiting_for(store: Store, ex: Any) -> dict[str, Any] | None:
    """What a QUEUED execution waits for, machine-readable."""
    if ex.state is not State.QUEUED:  # before reading (parsing) the flow: big ones cost
        return None
    flow = store.flow_of(ex.revision_id)
    if flow.concurrency is None:
        return None
    return {
        "kind": "flow",
        "name": flow.key,
        "running": store.active_executions(flow.namespace, flow.id),
        "limit": flow.concurrency.limit,
    }


def _check_dict(c: CheckRow) -> dict[str, Any]:
    return {
        "phase": c.phase,
        "position": c.position,
        "kind": c.kind,
        "ok": c.ok,
        "message": c.message,
        "output": c.output,
        "started_at": c.started_at,
        "ended_at": c.ended_at,
    }


def run_outputs(outputs: Mapping[str, Any], run: TaskRunRow) -> Any:
    """One task run's outputs: an item's own entry of its task's list; a for_each task
    run's are its items' (shown with them), so none of its own."""
    found = outputs.get(run.task_id, {})
    if isinstance(found, list):
        return found[run.fork_index] if run.fork_index is not None else {}
    return found


# -- flow revisions ----------------------------------------------------------------------
def revision_history(store: Store, namespace: str, flow_id: str) -> list[dict[str, Any]]:
    """Every revision of a flow, newest first (number, time, hash, path, origin, how
    many executions pinned it); NotFound naming the flow."""
    found = store.revisions(namespace, flow_id, limit=10_000)
    if not found:
        raise NotFound(f"flow {namespace}/{flow_id} not found")
    return found


def revision_document(
    store: Store, namespace: str, flow_id: str, number: int | None = None
) -> dict[str, Any]:
    """One revision (the newest without ``number``): what was stored, its source text
    and the text of the files it referenced."""
    revision = store.find_flow(namespace, flow_id, number)
    if revision is None:
        which = f" revision {number}" if number is not None else ""
        raise NotFound(f"flow {namespace}/{flow_id}{which} not found")
    meta = next(
        (r for r in store.revisions(namespace, flow_id, limit=10_000) if r["id"] == revision.id),
        {},
    )
    return {
        "namespace": namespace,
        "id": flow_id,
        "revision": revision.revision,
        "revision_id": revision.id,
        "content_hash": revision.content_hash,
        "path": revision.path,
        "created_at": revision.created_at,
        "origin": meta.get("origin"),
        "executions": meta.get("executions", 0),
        "source": store.revision_source(revision.id),
        "scripts": store.revision_scripts(revision.id),
        "definition": revision.flow.to_dict(),
    }


def revision_diff(store: Store, namespace: str, flow_id: str, old: int, new: int) -> str:
    """A unified diff from revision ``old`` to ``new``: of the stored sources, then of
    each referenced file that differs (added and removed ones against nothing)."""
    if old < 1 or new < 1:
        raise UsageError(f"revision numbers start at 1, found {min(old, new)}")
    a = revision_document(store, namespace, flow_id, old)
    b = revision_document(store, namespace, flow_id, new)
    parts = [_diff(a["source"], b["source"], f"revision {old}", f"revision {new}")]
    for name in sorted({*a["scripts"], *b["scripts"]}):
        before, after = a["scripts"].get(name), b["scripts"].get(name)
        if name in a["scripts"] and name in b["scripts"] and before == after:
            continue
        parts.append(
            _diff(
                before or "",
                after or "",
                f"revision {old}: {name}" + ("" if name in a["scripts"] else " (absent)"),
                f"revision {new}: {name}" + ("" if name in b["scripts"] else " (absent)"),
            )
        )
    return "".join(parts)


def _diff(a: str, b: str, a_name: str, b_name: str) -> str:
    import difflib  # only for a diff: start-up speed

    lines = difflib.unified_diff(
        a.splitlines(keepends=True), b.splitlines(keepends=True), a_name, b_name
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def iso(ts: float | None) -> str | None:
    """A time as ISO 8601 text in UTC (``2026-11-24T17:51:06.120544+00:00``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()


def with_iso(value: Any) -> Any:
    """``value`` with ``<name>_iso`` (ISO 8601 in UTC) right after each ``<name>_at`` (and
    ``at``) time given as seconds, in nested mappings and lists too: what the API answers
    (:mod:`ordo.api.models`) and the CLI's ``--json`` print alike."""
    if isinstance(value, list):
        return [with_iso(v) for v in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        out[key] = with_iso(item)
        timed = isinstance(key, str) and (key == "at" or key.endswith("_at"))
        if timed and f"{key}_iso" not in value:
            number = isinstance(item, int | float) and not isinstance(item, bool)
            out[f"{key}_iso"] = iso(item) if number else None
    return out


def state_history(store: Store, execution_id: int) -> list[dict[str, Any]]:
    """Every recorded transition of the execution and of its task runs, oldest first:
    time (seconds and ISO 8601), what moved (``task`` is None for the execution itself,
    else the task run's label), from which state to which, and why."""
    store.get_execution(execution_id)  # NotFound for an unknown id
    labels = {r.id: r.label for r in store.task_runs(execution_id)}
    return [
        {
            "at": h.at,
            "at_iso": iso(h.at),
            "task": None if h.task_run_id is None else labels.get(h.task_run_id, "?"),
            "task_run_id": h.task_run_id,
            "from": None if h.from_state is None else h.from_state.value,
            "to": h.to_state.value,
            "reason": h.reason,
        }
        for h in store.history(execution_id)
    ]
