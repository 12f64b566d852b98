"""What the store hands back: plain frozen rows. Times are UTC epoch seconds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from msgspec import Struct, field

from ordo.masking import MASK
from ordo.model import Flow, State

#: Upper bounds (seconds) of the task-run duration histogram's buckets.
BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 3600.0)


class Revision(Struct, frozen=True):
    """A stored revision of a flow: its id, path, content hash and definition."""

    id: int
    namespace: str
    flow_id: str
    revision: int
    content_hash: str
    path: str | None
    created_at: float
    flow: Flow


class ExecutionRow(Struct, frozen=True):
    """An execution as stored: its flow, state, inputs, labels, times and lineage."""

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
    root_id: int | None = None
    parent_attempt_id: int | None = None
    outputs: Mapping[str, Any] | None = None
    stopped: str | None = None
    dev: bool = False
    saved_name: str | None = None
    saved_description: str | None = None
    saved_at: float | None = None
    original_id: int | None = None  # the execution this one replays
    started_by: str | None = None  # manual, api, schedule:<trigger>, event:<type>, webhook:...
    queue: str | None = None  # every task run's queue; None: each task's own
    options: Mapping[str, Any] | None = None  # RunOptions.to_dict(): "run with options"
    scope: tuple[str, ...] | None = None  # namespaces its starter may use; None: all
    kind: str = "FLOW"  # FLOW (a flow of tasks) or SCRIPT (a script or handler run directly)

    @property
    def flow_key(self) -> str:
        return f"{self.namespace}/{self.flow_id}"

    def template_info(self) -> dict[str, Any]:
        """What templates see as ``execution``."""
        return {
            "id": self.id,
            "flow": self.flow_id,
            "namespace": self.namespace,
            "labels": dict(self.labels),
            "started": _iso(self.started_at),
            "inputs": dict(self.inputs),
            "parent_id": self.parent_id,
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()


class TaskRunRow(Struct, frozen=True):
    """A task run as stored: its task, state, attempts and times."""

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
    fork_of: int | None = None
    fork_index: int | None = None
    parent_run_id: int | None = None
    #: SKIPPED without an attempt that counts (since its last restart, none but attempts
    #: handed back or dropped before they ran)
    skipped_unstarted: bool = False

    @property
    def label(self) -> str:
        """How the task run is named: ``task`` or ``task[3]`` for a for_each item."""
        return self.task_id if self.fork_index is None else f"{self.task_id}[{self.fork_index}]"


class AttemptRow(Struct, frozen=True):
    """An attempt as stored: its number, state, worker, lease, times and exit."""

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


class WorkerRow(Struct, frozen=True):
    """A registered worker: its id, host, process, queues and last heartbeat."""

    id: str
    host: str
    pid: int
    queues: str
    started_at: float
    heartbeat_at: float
    running: int
    stopped_at: float | None


class Claim(Struct, frozen=True):
    """A task run handed to a worker: attempt ``number`` was created with a lease."""

    attempt_id: int
    task_run_id: int
    execution_id: int
    revision_id: int
    task_id: str
    number: int
    first_started_at: float


class LogLine(Struct, frozen=True):
    """One stored log line of an attempt."""

    id: int
    execution_id: int
    attempt_id: int
    at: float
    stream: str
    line: str


class MetricRow(Struct, frozen=True):
    """One stored metric of an attempt."""

    attempt_id: int
    task_run_id: int
    name: str
    kind: str
    value: float
    tags: Mapping[str, str]
    at: float


class CheckRow(Struct, frozen=True):
    """One pre or post check that ran for an attempt (see :class:`ordo.model.CheckResult`)."""

    attempt_id: int
    task_run_id: int
    phase: str
    position: int
    kind: str
    ok: bool
    message: str
    output: str | None
    started_at: float
    ended_at: float


class HistoryRow(Struct, frozen=True):
    """One state change of an execution or a task run."""

    execution_id: int
    task_run_id: int | None
    from_state: State | None
    to_state: State
    at: float
    reason: str | None


class NewLog(Struct, frozen=True):
    """A log line waiting to be written."""

    execution_id: int
    attempt_id: int
    at: float
    stream: str
    line: str


class Connection(Struct, frozen=True):
    """A named external resource. ``config`` holds ``url`` (sql) or ``base_url`` and
    ``headers`` (http); :meth:`masked` is what may be shown."""

    name: str
    type: str
    config: Mapping[str, Any]
    created_at: float
    updated_at: float

    def masked(self) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        for key, value in self.config.items():
            if key in ("url", "base_url") and isinstance(value, str):
                shown[key] = mask_url(value)
            elif key == "headers" and isinstance(value, Mapping):
                shown[key] = {k: MASK for k in value}
            else:
                shown[key] = value
        return shown

    def secrets(self) -> list[str]:
        """The values that must never be shown: passwords in URLs, header values."""
        found: list[str] = []
        for key, value in self.config.items():
            if key in ("url", "base_url") and isinstance(value, str):
                password = _url_password(value)
                if password:
                    found.append(password)
            elif key == "headers" and isinstance(value, Mapping):
                found.extend(str(v) for v in value.values() if len(str(v)) >= 4)
        return found


def _url_password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def mask_url(url: str) -> str:
    """``scheme://user:****@host/...``: the password replaced."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", f":{MASK}@", 1)
    return parts._replace(netloc=netloc).geturl()


class AttemptProcess(Struct, frozen=True):
    """The process group an attempt started on a machine (see
    :func:`ordo.runners.process.group_start` for ``started``)."""

    attempt_id: int
    group: int
    started: int | None


class RecordResult(Struct):
    """What one batch of recorded outcomes changed. ``nested`` are attempts recorded on
    the way (a flow task whose child execution ended), with whether each will retry;
    ``stopped`` the executions told to stop (with their children)."""

    ended_executions: dict[int, State] = field(default_factory=dict)
    retries: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    nested: list[tuple[Claim, Any, bool]] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)
    readied_after: bool = False  # (see TaskRuns.record_outcomes' ``then``)


class Swept(Struct, frozen=True):
    """One batch of ``ordo gc``: how many executions were deleted (or, in a dry run,
    would be) in whole trees, their rows in each other table, the oldest and newest end
    among them, and whether they were dev executions."""

    executions: int
    rows: Mapping[str, int]
    oldest: float | None
    newest: float | None
    dev: bool = False


class Reclaimed(Struct, frozen=True):
    """What reclaiming space after ``ordo gc`` did: the bytes given back to the file
    system, or None when this store does not give space back itself; and, for the user,
    how (or why not)."""

    bytes: int | None
    how: str


class ScheduleRow(Struct, frozen=True):
    """A stored schedule: its flow, cron expression and time zone, the inputs its
    executions get, and whether it is active."""

    id: int
    namespace: str
    flow_id: str
    cron: str
    timezone: str
    inputs: dict[str, Any]
    active: bool
    created_by: str | None
    created_at: float
    updated_at: float

    @property
    def trigger_id(self) -> str:
        """The id of the trigger it is to the scheduler (``#ID``: never a flow file's
        trigger id, which has no ``#``); its executions say ``started_by: schedule:#ID``."""
        return f"#{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow": f"{self.namespace}/{self.flow_id}",
            "cron": self.cron,
            "timezone": self.timezone,
            "inputs": self.inputs,
            "active": self.active,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
