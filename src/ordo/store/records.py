"""What the store hands back: plain frozen rows. Times are UTC epoch seconds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ordo.model import Flow, State


@dataclass(frozen=True)
class Revision:
    id: int
    namespace: str
    flow_id: str
    revision: int
    content_hash: str
    path: str | None
    created_at: float
    flow: Flow


@dataclass(frozen=True)
class ExecutionRow:
    id: int
    revision_id: int
    namespace: str
    flow_id: str
    state: State
    inputs: Mapping[str, Any]
    labels: Mapping[str, str]
    pending: int
    reason: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    deadline: float | None
    parent_id: int | None

    @property
    def flow_key(self) -> str:
        return f"{self.namespace}/{self.flow_id}"


@dataclass(frozen=True)
class TaskRunRow:
    id: int
    execution_id: int
    task_id: str
    state: State
    pending_deps: int
    allow_failure: bool
    attempts: int
    last_attempt_id: int | None
    reason: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None


@dataclass(frozen=True)
class AttemptRow:
    id: int
    task_run_id: int
    execution_id: int
    number: int
    state: State
    worker_id: str | None
    lease_expires_at: float | None
    started_at: float
    ended_at: float | None
    exit_code: int | None
    reason: str | None
    error: str | None
    cpu_seconds: float | None
    peak_rss_kb: int | None


@dataclass(frozen=True)
class WorkerRow:
    id: str
    host: str
    pid: int
    queues: str
    started_at: float
    heartbeat_at: float
    running: int
    stopped_at: float | None


@dataclass(frozen=True)
class Claim:
    """A task run handed to a worker: attempt ``number`` was created with a lease."""

    attempt_id: int
    task_run_id: int
    execution_id: int
    revision_id: int
    task_id: str
    number: int
    first_started_at: float


@dataclass(frozen=True)
class LogLine:
    id: int
    execution_id: int
    attempt_id: int
    at: float
    stream: str
    line: str


@dataclass(frozen=True)
class MetricRow:
    attempt_id: int
    task_run_id: int
    name: str
    kind: str
    value: float
    tags: Mapping[str, str]
    at: float


@dataclass(frozen=True)
class HistoryRow:
    execution_id: int
    task_run_id: int | None
    from_state: State | None
    to_state: State
    at: float
    reason: str | None


@dataclass(frozen=True)
class NewLog:
    """A log line waiting to be written."""

    execution_id: int
    attempt_id: int
    at: float
    stream: str
    line: str


@dataclass
class RecordResult:
    """What one batch of recorded outcomes changed."""

    ended_executions: dict[int, State] = field(default_factory=dict)
    retries: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
