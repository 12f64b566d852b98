"""Stored things as plain JSON types: what ``--json`` prints and the API returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def execution_document(store: Store, execution_id: int) -> dict[str, Any]:
    """Everything about one execution as plain JSON types (``--json``, the API)."""
    ex = store.get_execution(execution_id)
    attempts = store.attempts(execution_id)
    outputs = store.outputs(execution_id)
    metrics = store.metrics(execution_id)
    checks = store.checks(execution_id)
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
                    {
                        **attempt_dict(a),
                        "checks": [_check_dict(c) for c in checks if c.attempt_id == a.id],
                    }
                    for a in attempts
                    if a.task_run_id == r.id
                ],
                "outputs": run_outputs(outputs, r),
                "metrics": [metric_dict(m) for m in metrics if m.task_run_id == r.id],
                "started_at": r.started_at,
                "ended_at": r.ended_at,
            }
        )
    children = [
        {"id": c.id, "flow": c.flow_key, "state": c.state.value, "reason": c.reason}
        for c in store.children(execution_id)
    ]
    doc = {**execution_dict(ex), "children": children, "task_runs": runs}
    doc["waiting_for"] = _waiting_for(store, ex)
    return doc


def _waiting_for(store: Store, ex: Any) -> dict[str, Any] | None:
    """What a QUEUED execution waits for, machine-readable."""
    flow = store.flow_of(ex.revision_id)
    if ex.state is not State.QUEUED or flow.concurrency is None:
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
