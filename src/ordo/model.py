"""Flows, tasks, states and the transition table. Pure: no I/O.

A :class:`Flow` is the validated, normalized form of a flow file. It round-trips through
:meth:`Flow.to_dict` / :meth:`Flow.from_dict` (plain JSON types), which is how the store
keeps a revision so that a known file is loaded again without re-validating it.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from typing import Any

from msgspec import Struct, field
from msgspec.structs import replace

from ordo.errors import IllegalTransition


class State(enum.StrEnum):
    """States of executions, task runs and attempts (DESIGN.md §2)."""

    CREATED = "CREATED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    FAILED = "FAILED"
    KILLING = "KILLING"
    KILLED = "KILLED"
    RESTARTED = "RESTARTED"
    SKIPPED = "SKIPPED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: frozenset[State] = frozenset(
    {State.SUCCESS, State.WARNING, State.FAILED, State.KILLED, State.SKIPPED}
)

#: The one table of legal transitions, for executions and task runs alike.
TRANSITIONS: Mapping[State, frozenset[State]] = {
    # CREATED -> KILLED: cancelled by a flow's concurrency limit; -> FAILED: refused by it
    State.CREATED: frozenset(
        {State.QUEUED, State.RUNNING, State.SKIPPED, State.KILLED, State.FAILED}
    ),
    State.QUEUED: frozenset({State.RUNNING, State.KILLED}),
    # RUNNING -> SKIPPED: a task run whose run_if answered SKIP or STOP once claimed.
    State.RUNNING: frozenset(
        {State.SUCCESS, State.WARNING, State.FAILED, State.KILLING, State.SKIPPED}
    ),
    State.KILLING: frozenset({State.KILLED}),
    State.FAILED: frozenset({State.RESTARTED}),
    State.KILLED: frozenset({State.RESTARTED}),
    State.WARNING: frozenset({State.RESTARTED}),
    # a restarted task run may be skipped or killed again before it runs
    State.RESTARTED: frozenset({State.RUNNING, State.SKIPPED, State.KILLED}),
    State.SUCCESS: frozenset({State.RESTARTED}),  # ordo restart --from: run it again
    State.SKIPPED: frozenset({State.RESTARTED}),  # skipped because of a failure: again
}
#: ``ordo mark``: the states an ended task run may be set to by hand, each with the
#: states it may be set from. These are edges of the same table, taken only by a mark
#: (see :data:`EDGES`); every mark goes through a manual attempt.
MARKS: Mapping[State, frozenset[State]] = {
    State.SUCCESS: frozenset({State.FAILED, State.KILLED, State.WARNING, State.SKIPPED}),
    State.FAILED: frozenset({State.SUCCESS, State.WARNING, State.SKIPPED}),
}
#: How a mark may change the ended execution it settles: as a task run's, and to WARNING.
SETTLES: Mapping[State, frozenset[State]] = {
    **MARKS,
    State.WARNING: frozenset({State.FAILED, State.SUCCESS}),
}


class By(enum.StrEnum):
    """Who takes an edge: work itself (workers, kills, restarts, recovery), a person
    marking a task run (``ordo mark``), or a replay copying a task run that ended well
    into the new execution (CREATED -> the state it ended in)."""

    WORK = "work"
    MARK = "mark"
    COPY = "copy"


def _edges() -> dict[tuple[State, State], frozenset[By]]:
    edges: dict[tuple[State, State], set[By]] = {}
    for old, targets in TRANSITIONS.items():
        for new in targets:
            edges.setdefault((old, new), set()).add(By.WORK)
    for new, sources in SETTLES.items():
        for old in sources:
            edges.setdefault((old, new), set()).add(By.MARK)
    for new in TERMINAL:
        edges.setdefault((State.CREATED, new), set()).add(By.COPY)
    return {edge: frozenset(who) for edge, who in edges.items()}


#: The one table every change of state is checked against: each legal edge and who may
#: take it. The work edges are :data:`TRANSITIONS`; marks and a replay's copies add theirs.
EDGES: Mapping[tuple[State, State], frozenset[By]] = _edges()


def can_transition(old: State, new: State, by: By = By.WORK) -> bool:
    return by in EDGES.get((old, new), ())


def check_transition(old: State, new: State, what: str = "", by: By = By.WORK) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` is in the table for ``by``."""
    if not can_transition(old, new, by):
        label = f"{what}: " if what else ""
        raise IllegalTransition(f"{label}illegal transition {old.value} -> {new.value}")


#: Every state ``old`` may move to ``new`` from; used for conditional updates.
def sources_of(new: State, by: By = By.WORK) -> frozenset[State]:
    return frozenset(old for (old, to), who in EDGES.items() if to is new and by in who)


INPUT_TYPES = ("string", "int", "float", "bool", "json")
#: What an execution is: a flow of tasks, or a single script or handler run directly.
KINDS = ("FLOW", "SCRIPT", "CONNECTION", "SCHEDULE")
#: The namespace of the flows a handler's ``this.connect`` calls run as (kind
#: CONNECTION, one per connection): not listed among the flows.
CONNECTIONS = "connections"
#: The reason of the SKIPPED outcome of a claim dropped before its launch because its
#: execution was failing (``Launcher.drop_failing``): its attempt never ran.
DROPPED = "failing"
#: How the reason of a task run begins that ended FAILED without its retry, its execution
#: failing (``ordo.engine.policy.dropped``)
NOT_RETRIED = "not retried: "
#: Why a task run was skipped when asked to be (``--skip``): not because of a failure.
ON_REQUEST = "skipped on request"
TASK_TYPES = ("shell", "python", "sql", "http", "flow")


class RetryPolicy(Struct, frozen=True):
    """How often and when a failed attempt is tried again.

    ``attempts`` counts all tries (1 = no retry). Delays are seconds. ``on_exit_codes``
    empty means any exit code may be retried; ``budget`` caps the total time since the
    first attempt started; ``on_post_check`` false: an attempt failed by a post check is
    not retried.
    """

    attempts: int = 1
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: float = 0.0
    on_exit_codes: tuple[int, ...] = ()
    on_timeout: bool = True
    budget: float | None = None
    on_post_check: bool = True
    on_exit: bool = True  # false: a failure by exit code is never retried

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "delay": self.delay,
            "backoff": self.backoff,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
            "on_exit_codes": list(self.on_exit_codes),
            "on_exit": self.on_exit,
            "on_timeout": self.on_timeout,
            "budget": self.budget,
            "on_post_check": self.on_post_check,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RetryPolicy:
        return cls(
            attempts=int(d.get("attempts", 1)),
            delay=float(d.get("delay", 0.0)),
            backoff=float(d.get("backoff", 1.0)),
            max_delay=d.get("max_delay"),
            jitter=float(d.get("jitter", 0.0)),
            on_exit_codes=tuple(d.get("on_exit_codes", ())),
            on_exit=bool(d.get("on_exit", True)),
            on_timeout=bool(d.get("on_timeout", True)),
            budget=d.get("budget"),
            on_post_check=bool(d.get("on_post_check", True)),
        )


CHECK_KINDS = ("file_exists", "no_match", "command", "function")


class Check(Struct, frozen=True):
    """One pre or post check of a task: ``kind`` is one of :data:`CHECK_KINDS`; ``fields``
    its validated fields (``path``; ``path`` and ``pattern``; ``run`` and maybe
    ``timeout`` in seconds; ``function``), templates until rendered for an attempt."""

    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.fields}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Check:
        return cls(str(d["kind"]), {k: v for k, v in d.items() if k != "kind"})


class CheckResult(Struct, frozen=True):
    """What one check said for one attempt: ``phase`` is ``pre`` or ``post``,
    ``position`` its 1-based place in its list; ``output`` what a command check printed
    (its end, when long). Times are epoch seconds."""

    phase: str
    position: int
    kind: str
    ok: bool
    message: str
    started_at: float
    ended_at: float
    output: str | None = None


class InputSpec(Struct, frozen=True):
    """One input a flow declares: its name, type, default, whether it is required."""

    name: str
    type: str = "string"
    default: Any = None
    required: bool = False
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "default": self.default,
            "required": self.required,
            "description": self.description,
        }


class Task(Struct, frozen=True):
    """One node of a flow.

    ``spec`` holds the type's own fields (``command``, ``function``, ``url``, ...) exactly
    as validated; ``with_`` is the ``with:`` mapping. ``line`` is where the task starts in
    its file, for messages.
    """

    id: str
    type: str
    spec: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    depends_on: tuple[str, ...] = ()
    with_: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    allow_failure: bool = False
    queue: str = "default"
    for_each: Any = None  # a template (or literal list): one task run per item
    concurrency: int | None = None  # at most this many items at once
    run_if: Any = None  # a template, a boolean, "RUN"/"SKIP"/"STOP", or {function: m:f}
    concurrency_key: str | None = None  # task runs sharing a key run at most ...
    concurrency_limit: int = 1  # ... this many at once, in the whole store
    pre_checks: tuple[Check, ...] = ()  # before each attempt; a failure is not retried
    post_checks: tuple[Check, ...] = ()  # after an attempt that succeeded
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "spec": dict(self.spec),
            "description": self.description,
            "depends_on": list(self.depends_on),
            "with": dict(self.with_),
            "env": dict(self.env),
            "retry": self.retry.to_dict(),
            "timeout": self.timeout,
            "allow_failure": self.allow_failure,
            "queue": self.queue,
            "for_each": self.for_each,
            "concurrency": self.concurrency,
            "run_if": self.run_if,
            "concurrency_key": self.concurrency_key,
            "concurrency_limit": self.concurrency_limit,
            "pre_checks": [c.to_dict() for c in self.pre_checks],
            "post_checks": [c.to_dict() for c in self.post_checks],
            "line": self.line,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Task:
        return cls(
            id=d["id"],
            type=d["type"],
            spec=d.get("spec", {}),
            description=d.get("description", ""),
            depends_on=tuple(d.get("depends_on", ())),
            with_=d.get("with", {}),
            env=d.get("env", {}),
            retry=RetryPolicy.from_dict(d.get("retry", {})),
            timeout=d.get("timeout"),
            allow_failure=bool(d.get("allow_failure", False)),
            queue=d.get("queue", "default"),
            for_each=d.get("for_each"),
            concurrency=d.get("concurrency"),
            run_if=d.get("run_if"),
            concurrency_key=d.get("concurrency_key"),
            concurrency_limit=int(d.get("concurrency_limit", 1)),
            pre_checks=tuple(Check.from_dict(c) for c in d.get("pre_checks", ())),
            post_checks=tuple(Check.from_dict(c) for c in d.get("post_checks", ())),
            line=d.get("line"),
        )


CONCURRENCY_BEHAVIORS = ("queue", "cancel", "fail")


class FlowConcurrency(Struct, frozen=True):
    """At most ``limit`` executions of a flow RUNNING at once (children included). What
    happens to one more: ``queue`` (QUEUED until one ends), ``cancel`` (ends KILLED) or
    ``fail`` (ends FAILED), before any of its tasks runs."""

    limit: int
    behavior: str = "queue"

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.limit, "behavior": self.behavior}


class Trigger(Struct, frozen=True):
    """What starts a flow without a person: a cron ``schedule`` (``cron``, ``timezone``,
    ``dialect``, ``catchup``, ``max_catchup``), an ``event`` of a type (``event``, with an
    optional ``filter`` template) or a ``webhook`` (``key``, the secret in its URL).
    ``id`` is unique within the flow (default: the type and its position, ``schedule1``)."""

    id: str
    type: str
    cron: str = ""
    timezone: str = "UTC"
    dialect: str = "standard"
    catchup: str = "none"
    max_catchup: int = 10
    event: str = ""
    filter: str | None = None
    key: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "cron": self.cron,
            "timezone": self.timezone,
            "dialect": self.dialect,
            "catchup": self.catchup,
            "max_catchup": self.max_catchup,
            "event": self.event,
            "filter": self.filter,
            "key": self.key,
            "inputs": dict(self.inputs),
        }


class NotifyRule(Struct, frozen=True):
    """Tell someone when an execution ends in one of the states ``on``: by mail to
    ``email`` addresses and/or by a JSON POST to ``webhook``."""

    on: tuple[str, ...]
    email: tuple[str, ...] = ()
    webhook: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"on": list(self.on), "email": list(self.email), "webhook": self.webhook}


#: The retry keys "run with options" may set for one run (the rest stay each task's).
RUN_RETRY_KEYS = ("attempts", "delay", "backoff")


class RunOptions(Struct, frozen=True):
    """What "run with options" sets for one execution only: ``retry`` keys (of
    :data:`RUN_RETRY_KEYS`) that replace those of every task's policy, a ``timeout``
    (seconds) that replaces the flow's, and ``notify`` rules added to the flow's."""

    retry: Mapping[str, float] = field(default_factory=dict)
    timeout: float | None = None
    notify: tuple[NotifyRule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.retry) or self.timeout is not None or bool(self.notify)

    def retry_policy(self, policy: RetryPolicy) -> RetryPolicy:
        """``policy`` with this run's retry keys over it."""
        if not self.retry:
            return policy
        given: dict[str, Any] = {
            k: int(v) if k == "attempts" else float(v)
            for k, v in self.retry.items()
            if k in RUN_RETRY_KEYS
        }
        return replace(policy, **given)

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.retry:
            found["retry"] = dict(self.retry)
        if self.timeout is not None:
            found["timeout"] = self.timeout
        if self.notify:
            found["notify"] = [n.to_dict() for n in self.notify]
        return found

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> RunOptions:
        if not d:
            return cls()
        return cls(
            retry=dict(d.get("retry") or {}),
            timeout=d.get("timeout"),
            notify=tuple(
                NotifyRule(on=tuple(n["on"]), email=tuple(n["email"]), webhook=n["webhook"])
                for n in d.get("notify") or ()
            ),
        )


class Flow(Struct, frozen=True, dict=True):
    """A validated flow definition.

    ``tasks`` keep their file order. When ``sequential`` is true the loader has already
    turned the listed order into ``depends_on`` chains, so the engine only ever sees a DAG.
    ``base_dir`` is the folder of the flow file: default working directory and import
    path of python tasks.
    """

    id: str
    tasks: tuple[Task, ...]
    namespace: str = "default"
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    inputs: tuple[InputSpec, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    sequential: bool = False
    timeout: float | None = None
    continue_on_error: bool = False
    outputs: Mapping[str, Any] = field(default_factory=dict)  # name -> template
    run_if: Any = None  # evaluated before any task
    concurrency: FlowConcurrency | None = None  # executions of this flow at once
    triggers: tuple[Trigger, ...] = ()
    notify: tuple[NotifyRule, ...] = ()
    active: bool = True  # triggers start it (the store's flag, set from this, decides)
    allow_manual: bool = True  # people and API clients may start it
    base_dir: str = "."
    path: str | None = None
    #: the task group (``for_each`` over ``tasks:``) this flow is the chain of: each
    #: value runs it as a child execution; its outputs are its last task's
    group: str | None = None
    #: a flow written in Python: the ``module:function`` its one task runs (``@flow``);
    #: the dict it returns is the flow's outputs
    python: str | None = None
    #: a Python flow's ``@task`` functions: each call of one is a task run (a step)
    steps: tuple[Task, ...] = ()
    #: what its executions are: FLOW (a flow of tasks), SCRIPT (a single script or
    #: handler run directly: a Python file that defines ``handler`` and no ``@flow``) or
    #: CONNECTION (a handler's ``this.connect`` call)
    kind: str = "FLOW"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.id}"

    def task(self, task_id: str) -> Task:
        return self._by_id[task_id]

    @functools.cached_property
    def _by_id(self) -> dict[str, Task]:
        return {t.id: t for t in (*self.steps, *self.tasks)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "description": self.description,
            "labels": dict(self.labels),
            "inputs": {i.name: i.to_dict() for i in self.inputs},
            "vars": dict(self.vars),
            "sequential": self.sequential,
            "timeout": self.timeout,
            "continue_on_error": self.continue_on_error,
            "outputs": dict(self.outputs),
            "run_if": self.run_if,
            "concurrency": self.concurrency.to_dict() if self.concurrency else None,
            "triggers": [t.to_dict() for t in self.triggers],
            "notify": [n.to_dict() for n in self.notify],
            "active": self.active,
            "allow_manual": self.allow_manual,
            "base_dir": self.base_dir,
            "path": self.path,
            "group": self.group,
            "python": self.python,
            "steps": [t.to_dict() for t in self.steps],
            "kind": self.kind,
            "tasks": [t.to_dict() for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Flow:
        return cls(
            id=d["id"],
            namespace=d.get("namespace", "default"),
            description=d.get("description", ""),
            labels=d.get("labels", {}),
            inputs=tuple(
                InputSpec(
                    name=name,
                    type=spec.get("type", "string"),
                    default=spec.get("default"),
                    required=bool(spec.get("required", False)),
                    description=spec.get("description", ""),
                )
                for name, spec in d.get("inputs", {}).items()
            ),
            vars=d.get("vars", {}),
            sequential=bool(d.get("sequential", False)),
            timeout=d.get("timeout"),
            continue_on_error=bool(d.get("continue_on_error", False)),
            outputs=d.get("outputs", {}),
            run_if=d.get("run_if"),
            concurrency=FlowConcurrency(**d["concurrency"]) if d.get("concurrency") else None,
            triggers=tuple(Trigger(**t) for t in d.get("triggers", ())),
            notify=tuple(
                NotifyRule(on=tuple(n["on"]), email=tuple(n["email"]), webhook=n["webhook"])
                for n in d.get("notify", ())
            ),
            active=bool(d.get("active", True)),
            allow_manual=bool(d.get("allow_manual", True)),
            base_dir=d.get("base_dir", "."),
            path=d.get("path"),
            group=d.get("group"),
            python=d.get("python"),
            steps=tuple(Task.from_dict(t) for t in d.get("steps", ())),
            kind=d.get("kind", "FLOW"),
            tasks=tuple(Task.from_dict(t) for t in d["tasks"]),
        )


class Metric(Struct, frozen=True):
    """A number an attempt reported: a counter or a duration, with tags."""

    name: str
    value: float
    kind: str = "counter"  # counter | duration
    tags: Mapping[str, str] = field(default_factory=dict)


def function_run_if(run_if: Any) -> Mapping[str, Any] | None:
    """A task's or flow's ``run_if`` when it names a function (``{function: m:f}``, asked
    of a python host), else None (a template or a word, answered where it is read)."""
    if run_if is None or isinstance(run_if, (str, bool)):
        return None
    return run_if if isinstance(run_if, Mapping) else None


class Outcome(Struct, frozen=True):
    """What a runner reports for one attempt. A failure is data, not an exception.

    ``state`` is SUCCESS or FAILED (KILLED when stopped on request; WARNING when the
    task said so; SKIPPED when its run_if answered SKIP, or STOP with reason ``stop``).
    ``reason`` is a short machine word for why it failed (``timeout``, ``exit_code``,
    ``error``, ``template``, ``pre_check``, ``post_check``, ...); ``error`` is the human
    message. ``forks`` is set instead when a for_each task run was expanded: the items,
    one task run each. ``checks`` are the results of the task's pre and post checks that
    ran, in order.
    """

    state: State
    exit_code: int | None = None
    error: str | None = None
    reason: str | None = None
    outputs: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple[Metric, ...] = ()
    cpu_seconds: float | None = None
    peak_rss_kb: int | None = None
    forks: tuple[Any, ...] | None = None
    checks: tuple[CheckResult, ...] = ()

    @property
    def ok(self) -> bool:
        return self.state in (State.SUCCESS, State.WARNING, State.SKIPPED)


_UNITS = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0))


def parse_duration(value: object) -> float:
    """``500ms``, ``2s``, ``1m``, ``1h``, ``1d`` or a number of seconds -> seconds.

    Raises ValueError with a message naming the accepted forms.
    """
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        number, factor = text, 1.0
        for suffix, unit in _UNITS:
            if text.endswith(suffix):
                number, factor = text[: -len(suffix)].strip(), unit
                break
        try:
            seconds = float(number) * factor
        except ValueError:
            seconds = None
    if seconds is None or seconds < 0 or seconds != seconds:
        raise ValueError(f"expected a duration like 500ms, 2s, 1m, 1h, found {value!r}")
    return seconds
