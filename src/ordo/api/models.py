"""What the API answers, as models: the OpenAPI document describes every response, and
each time (``created_at``, seconds since the epoch) also comes as ISO 8601 text in UTC
(``created_at_iso``). The routes build plain dicts (:mod:`ordo.views`, shared with the
CLI's ``--json``); these models check and describe them. Keys a model does not name are
kept (``extra="allow"``), so adding a field never drops it from an answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _iso(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return None


class Answer(BaseModel):
    """Adds ``<name>_iso`` beside every ``<name>_at`` (and ``at``) time given as seconds."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _times(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        added = {
            f"{key}_iso": _iso(value)
            for key, value in data.items()
            if isinstance(key, str) and (key == "at" or key.endswith("_at"))
            if f"{key}_iso" not in data
        }
        return {**data, **added} if added else data


Time = Field(default=None, description="ISO 8601 text in UTC")


class Saved(Answer):
    name: str
    description: str | None = None
    saved_at: float | None = None
    saved_at_iso: str | None = Time


class Execution(Answer):
    id: int
    namespace: str
    flow: str
    revision_id: int
    state: str
    inputs: dict[str, Any]
    labels: dict[str, str]
    reason: str | None = None
    created_at: float
    created_at_iso: str | None = Time
    started_at: float | None = None
    started_at_iso: str | None = Time
    ended_at: float | None = None
    ended_at_iso: str | None = Time
    parent_id: int | None = None
    original_id: int | None = None
    started_by: str | None = None
    queue: str | None = None
    kind: str = Field(
        default="FLOW",
        description="FLOW (a flow of tasks), SCRIPT (a script run directly) or CONNECTION "
        "(a handler's this.connect call)",
    )
    options: dict[str, Any] | None = Field(
        default=None, description="run with options: retry, timeout, notify of this run only"
    )
    scope: list[str] | None = Field(
        default=None, description="namespaces its starter's token was limited to; null: all"
    )
    outputs: Any = None
    dev: bool = False
    saved: Saved | None = None


class ExecutionPage(Answer):
    items: list[Execution]
    next_cursor: int | None = Field(description="the cursor of the next page; null: the last")


class Check(Answer):
    phase: str
    position: int
    kind: str
    ok: bool
    message: str | None = None
    output: str | None = None
    started_at: float | None = None
    started_at_iso: str | None = Time
    ended_at: float | None = None
    ended_at_iso: str | None = Time


class Attempt(Answer):
    id: int
    task_run_id: int
    number: int
    state: str
    started_at: float
    started_at_iso: str | None = Time
    ended_at: float | None = None
    ended_at_iso: str | None = Time
    exit_code: int | None = None
    reason: str | None = None
    error: str | None = None
    worker: str | None = None
    cpu_seconds: float | None = None
    peak_rss_kb: int | None = None


class DocumentAttempt(Attempt):
    checks: list[Check] = Field(default_factory=list)


class Metric(Answer):
    task_run_id: int
    name: str
    kind: str
    value: float
    tags: dict[str, str] = Field(default_factory=dict)


class TaskRun(Answer):
    id: int
    task: str = Field(description="the task's id; task[i] for a for_each item")
    fork_index: int | None = None
    called_by: int | None = None
    state: str
    reason: str | None = None
    attempts: list[DocumentAttempt]
    outputs: Any = None
    metrics: list[Metric] = Field(default_factory=list)
    started_at: float | None = None
    started_at_iso: str | None = Time
    ended_at: float | None = None
    ended_at_iso: str | None = Time


class Child(Answer):
    id: int
    flow: str
    state: str
    reason: str | None = None


class Notification(Answer):
    execution_id: int
    ended_at: float
    ended_at_iso: str | None = Time
    target: str
    ok: bool
    error: str | None = None
    sent_at: float
    sent_at_iso: str | None = Time


class ExecutionDocument(Execution):
    children: list[Child] = Field(default_factory=list)
    calls: list[Child] = Field(
        default_factory=list, description="its this.connect calls (executions of kind CONNECTION)"
    )
    task_runs: list[TaskRun]
    waiting_for: dict[str, Any] | None = None
    notifications: list[Notification] = Field(default_factory=list)


class Restarted(Execution):
    run_again: list[str] = Field(description="the task runs that run again")


class StateChange(Answer):
    old: str
    new: str


class Marked(Answer):
    task: str
    old: str
    new: str
    execution: StateChange
    reopened: list[str]


class Outputs(Answer):
    execution: Any = Field(description="the flow's outputs: once it has ended")
    tasks: dict[str, Any] = Field(description="each task's outputs; a for_each task's a list")


class LogLine(Answer):
    id: int
    attempt_id: int | None
    task: str | None = Field(default=None, description="the task run's label (item: work[2])")
    attempt: int | None = Field(default=None, description="the attempt's number")
    at: float
    at_iso: str | None = Time
    stream: str
    line: str


class HistoryEntry(Answer):
    at: float
    at_iso: str | None = Time
    task: str | None = Field(description="the task run's label; null: the execution itself")
    task_run_id: int | None = None
    from_: str | None = Field(alias="from", description="null for the first state")
    to: str
    reason: str | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)


class FlowSummary(Answer):
    namespace: str
    id: str
    revision: int
    description: str
    labels: dict[str, str]
    active: bool
    allow_manual: bool
    triggers: list[dict[str, Any]]
    tasks: list[str]
    inputs: dict[str, dict[str, Any]]
    created_at: float
    created_at_iso: str | None = Time


class RevisionRow(Answer):
    revision: int
    id: int
    created_at: float
    created_at_iso: str | None = Time
    content_hash: str
    path: str | None = None
    origin: Any = None
    executions: int = 0


class FlowDetail(FlowSummary):
    definition: dict[str, Any]
    source: str | None = None
    revisions: list[RevisionRow]


class RevisionDocument(Answer):
    namespace: str
    id: str
    revision: int
    revision_id: int
    content_hash: str
    path: str | None = None
    created_at: float
    created_at_iso: str | None = Time
    origin: Any = None
    executions: int = 0
    source: str | None = None
    scripts: dict[str, str] = Field(description="the text of each file the flow references")
    definition: dict[str, Any]


class Validated(Answer):
    valid: bool
    namespace: str
    id: str


class NextTimes(Answer):
    trigger: str
    cron: str
    timezone: str
    times: list[str] = Field(description="ISO 8601 times in UTC")


class Health(Answer):
    status: str


class Emitted(Answer):
    id: int
    executions: list[int]
    errors: list[Any]


class Event(Answer):
    id: int
    type: str
    data: Any
    received_at: float
    received_at_iso: str | None = Time
    executions: list[int]


class WebhookAnswer(Answer):
    id: int
    state: str
    outputs: Any = None


class Connection(Answer):
    name: str
    type: str
    config: dict[str, Any] = Field(description="with credentials masked")
    created_at: float
    created_at_iso: str | None = Time
    updated_at: float | None = None
    updated_at_iso: str | None = Time


class Worker(Answer):
    id: str
    host: str
    pid: int
    queues: str
    started_at: float
    started_at_iso: str | None = Time
    heartbeat_at: float
    heartbeat_at_iso: str | None = Time
    running: int
    stopped_at: float | None = None
    stopped_at_iso: str | None = Time
    alive: bool


class ProblemAt(BaseModel):
    message: str
    line: int | None = None
    column: int | None = None
    field: str | None = None


class Error(BaseModel):
    """Every error's one shape: what is wrong (FastAPI's own check of a request's
    parameters gives a list there), the problems of an invalid flow, and the current
    state of an execution a change was refused for."""

    model_config = ConfigDict(extra="allow")

    detail: str | list[dict[str, Any]]
    problems: list[ProblemAt] | None = None
    state: str | None = None


#: The errors any route may answer, in the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Error, "description": what}
    for status, what in (
        (401, "no token, or an unknown or revoked one"),
        (403, "a read-only token changing something, or a namespace it is not limited to"),
        (404, "not found (or in a namespace the token does not see)"),
        (409, "the change is not possible in the current state"),
        (422, "a bad parameter, body or flow definition"),
    )
}
