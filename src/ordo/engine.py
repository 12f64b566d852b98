"""Services over the store: registering flows, starting executions, and turning a claim
into what a runner needs (templates rendered against the store's outputs).

Every edge (CLI now, API later) changes state only through these functions and the
store's own transactional operations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ordo import definitions, templating
from ordo.errors import DefinitionError, Problem
from ordo.model import Flow, Outcome, State
from ordo.runners.base import LogSink, RunContext
from ordo.store import Store
from ordo.store.records import Claim, ExecutionRow, Revision


def read_flow_file(path: str | Path) -> tuple[str, bytes]:
    """The absolute path and bytes of a flow file, or a DefinitionError naming it."""
    absolute = os.path.abspath(path)
    try:
        with open(absolute, "rb") as f:
            return absolute, f.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DefinitionError(
            [Problem(f"cannot read flow file: {reason}", path=str(path))]
        ) from exc


def register_flow(store: Store, path: str | Path, now: float) -> Revision:
    """The stored revision for this file: reused when its content is known (no parsing,
    no validation), else validated and stored as the flow's next revision."""
    absolute, data = read_flow_file(path)
    digest = definitions.content_hash(data)
    known = store.find_revision(digest, absolute)
    if known is not None:
        return known
    text = _decode(data, absolute)
    flow = definitions.parse_flow(text, absolute)
    return store.add_revision(flow, text, digest, now)


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(
            [Problem(f"file is not UTF-8 text (byte {exc.start})", path=path)]
        ) from exc


def start_execution(
    store: Store,
    revision: Revision,
    given_inputs: Mapping[str, Any],
    now: float,
    *,
    labels: Mapping[str, str] | None = None,
) -> int:
    """Check and convert the inputs, then record and start a new execution. Flow labels
    are inherited; ``labels`` add to or override them."""
    flow = revision.flow
    inputs = definitions.coerce_inputs(flow, given_inputs)
    merged = {**flow.labels, **(labels or {})}
    return store.create_execution(revision.id, inputs, merged, now)


@dataclass(frozen=True)
class Prepared:
    """A claim ready to run, or the outcome it already has (a template error)."""

    claim: Claim
    context: RunContext | None = None
    outcome: Outcome | None = None


def prepare(
    store: Store,
    claim: Claim,
    log: LogSink,
    env: Mapping[str, str],
) -> Prepared:
    """Render the task's fields for this attempt. A missing reference fails the attempt
    (reason ``template``) with a message naming the reference and the task."""
    flow = store.flow_of(claim.revision_id)
    task = flow.task(claim.task_id)
    raw: dict[str, Any] = {
        "fields": dict(task.spec),
        "with": dict(task.with_),
        "env": dict(task.env),
    }
    try:
        rendered = _render(store, flow, claim, raw, env) if templating.has_template(raw) else raw
    except templating.TemplateError as exc:
        message = f"task '{task.id}': {exc}"
        return Prepared(claim, outcome=Outcome(State.FAILED, reason="template", error=message))
    ctx = RunContext(
        execution_id=claim.execution_id,
        task_run_id=claim.task_run_id,
        attempt_id=claim.attempt_id,
        attempt_number=claim.number,
        task=task,
        fields=rendered["fields"],
        with_=rendered["with"],
        env={k: str(v) for k, v in rendered["env"].items()},
        base_dir=flow.base_dir,
        log=log,
        timeout=task.timeout,
    )
    return Prepared(claim, context=ctx)


def _render(
    store: Store, flow: Flow, claim: Claim, raw: dict[str, Any], env: Mapping[str, str]
) -> Any:
    execution = store.get_execution(claim.execution_id)
    needed = templating.referenced_tasks(raw, flow.vars, every=[t.id for t in flow.tasks])
    outputs = store.outputs(claim.execution_id, needed) if needed else {}
    for task in flow.tasks:  # a task that ran without outputs still has its (empty) set
        if task.id in needed:
            outputs.setdefault(task.id, {})
    context = templating.make_context(
        execution.inputs, outputs, flow.vars, execution_info(execution), env
    )
    return templating.render(raw, context)


def execution_info(execution: ExecutionRow) -> dict[str, Any]:
    """What templates see as ``execution``."""
    return {
        "id": execution.id,
        "flow": execution.flow_id,
        "namespace": execution.namespace,
        "labels": dict(execution.labels),
        "started": _iso(execution.started_at),
        "inputs": dict(execution.inputs),
    }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()
