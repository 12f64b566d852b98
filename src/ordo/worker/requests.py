"""The requests a running task makes of ordo (a python handler's ``this.flow``, ``wait``,
``this.connect`` and ``system.*``, a flow function's ``@task`` calls), typed: :func:`parse`
turns each JSON request into one, or into an error answer naming what is wrong.
:mod:`ordo.worker.calls` answers them; it imports this module when a task first calls, so
a run whose tasks never call into ordo does not build these classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from msgspec import Struct

if TYPE_CHECKING:
    from ordo.model import Outcome
    from ordo.runners.base import RunContext

Answer = dict[str, Any]  # what goes back to the handler, as JSON


class StartChild(Struct, frozen=True):
    """``this.flow(...)``: start a child execution (waiting for it is a :class:`WaitChild`)."""

    flow: str
    revision: int | None
    inputs: Mapping[str, Any]
    namespace: str | None = None
    number: int | None = None  # its step


class WaitChild(Struct, frozen=True):
    """``child.wait()``: answered when the child execution ends, whoever ends it."""

    execution_id: int


class StartFlowTask(Struct, frozen=True):
    """A flow task whose function ``run_if`` answered RUN: the loop starts its child."""

    context: RunContext


class ConnectSetup(Struct, frozen=True):
    """``this.connect(...)``, first half: what to run (the connection looked up)."""

    connection: str | None
    type: str | None
    fields: Mapping[str, Any]
    shape: str | None = None  # fetchval, fetch, fetchrow, execute
    namespace: str | None = None
    number: int | None = None  # its step


class RecordCall(Struct, frozen=True):
    """``this.connect(...)``, second half: record the call as a task run."""

    task_id: str
    started: float
    outcome: Outcome
    number: int | None = None  # its step
    step: str = "connect"  # what the step calls: the connection's name, or its type
    kind: str = "sql"  # the call's type: sql or http
    lines: tuple[tuple[float, str, str], ...] = ()  # its log lines: (at, stream, line)


class TaskStep(Struct, frozen=True):
    """A flow function's ``@task`` call: its task run (a completed one, run again,
    answers at once); ``bad`` why its arguments cannot be stored."""

    number: int
    name: str
    args: list[Any]
    kwargs: Mapping[str, Any]
    bad: str | None = None
    wait: bool = False  # answered when the task run ends (a call, not a submit)
    here: bool = False  # the caller's host may run it (a call: see :class:`EndStep`)


class EndStep(Struct, frozen=True):
    """A ``@task`` attempt its flow function ran in its own host ended with ``reply``
    (the python host's); ``tell``: it succeeded, nothing to answer, else answered when
    its task run has ended (after its retries)."""

    attempt_id: int
    reply: Mapping[str, Any]
    tell: bool = False


class TaskSteps(Struct, frozen=True):
    """``.submit()`` calls sent together: their task runs start in one transaction."""

    steps: tuple[TaskStep, ...]


class WaitStep(Struct, frozen=True):
    """``future.result()``: answered when the step's task run ends, whoever ran it,
    with the answers of those of the task runs ``also`` (other steps the flow function
    submitted) that have ended by then."""

    run_id: int
    also: tuple[int, ...] = ()


class ValueStep(Struct, frozen=True):
    """``this.now()``, ``this.random()``: a value recorded the first time."""

    kind: str
    number: int


class LookUp(Struct, frozen=True):
    """``system.flow``, ``system.connection``, ``system.execution``: read-only."""

    request: Mapping[str, Any]


Request = (
    StartChild
    | WaitChild
    | StartFlowTask
    | ConnectSetup
    | RecordCall
    | LookUp
    | TaskStep
    | TaskSteps
    | WaitStep
    | ValueStep
)
LOOK_UPS = ("flow_info", "connection", "execution", "project")


class Connect(Struct, frozen=True):
    """``this.connect(...)`` as asked: run on the task's own thread."""

    setup: ConnectSetup


class ReadSecret(Struct, frozen=True):
    """``system.secret(name)``: answered on the task's own thread."""

    name: str


def parse(request: Mapping[str, Any]) -> Request | Connect | ReadSecret | EndStep | Answer:
    """The typed request of a handler's JSON ``request``; an error answer naming what is
    wrong when it is not one ordo knows."""
    op = request.get("op")
    try:
        if op == "flow":
            if not request.get("flow"):
                raise _Bad("a flow request needs the flow's id")
            revision = request.get("revision")
            return StartChild(
                str(request["flow"]),
                None if revision is None else _integer(op, "revision", revision),
                request.get("inputs") or {},
                _text(request.get("namespace")),
                _number(op, request),
            )
        if op == "wait":
            return WaitChild(_integer(op, "id", request.get("id")))
        if op == "task":
            return _task_step(request)
        if op == "tasks":
            steps = request.get("steps")
            if not isinstance(steps, list):
                raise _Bad("a tasks request needs its steps, a list")
            return TaskSteps(tuple(_task_step(s) for s in steps))
        if op == "task_wait":
            also = request.get("also") or []
            if not isinstance(also, list):
                raise _Bad("a task_wait request's also must be a list of task run ids")
            run = _integer(op, "run", request.get("run"))
            return WaitStep(run, tuple(_integer(op, "also", a) for a in also))
        if op == "task_end":
            reply = request.get("reply")
            if not isinstance(reply, Mapping):
                raise _Bad("a task_end request needs the task's reply, a mapping")
            attempt = _integer(op, "attempt", request.get("attempt"))
            return EndStep(attempt, reply, bool(request.get("tell")))
        if op in ("now", "random"):
            return ValueStep(op, _integer(op, "number", request.get("number")))
        if op == "connect":
            fields = request.get("fields") or {}
            name, kind = request.get("connection"), request.get("type")
            setup = ConnectSetup(
                name and str(name),
                kind and str(kind),
                fields,
                _text(request.get("shape")),
                _text(request.get("namespace")),
                _number(op, request),
            )
            return Connect(setup)
    except _Bad as exc:
        return {"error": str(exc)}
    if op == "secret":
        return ReadSecret(str(request.get("name")))
    if op in LOOK_UPS:
        return LookUp(request)
    return {"error": f"unknown request {op!r}"}


class _Bad(ValueError):
    pass


def _task_step(request: Any) -> TaskStep:
    if not isinstance(request, Mapping):
        raise _Bad("a task request must be a mapping")
    number = _integer("task", "number", request.get("number"))
    if not request.get("name"):
        raise _Bad("a task request needs the task's name")
    args, kwargs = request.get("args") or [], request.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, Mapping):
        raise _Bad("a task request's args must be a list and its kwargs a mapping")
    bad = _text(request.get("bad"))
    wait = bool(request.get("wait"))
    here = wait and bool(request.get("here"))
    return TaskStep(number, str(request["name"]), args, kwargs, bad, wait, here)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(op: str, request: Mapping[str, Any]) -> int | None:
    """A request's step number (None from a host that numbers no steps)."""
    value = request.get("number")
    return None if value is None else _integer(op, "number", value)


def _integer(op: str, name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Bad(f"a {op} request's {name} must be an integer, found {value!r}") from None
