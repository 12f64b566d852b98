"""Calls into ordo from running tasks: a python handler's ``this.flow``, ``wait``,
``this.connect`` and ``system.*`` arrive on the task's thread (through its python host)
as JSON requests; :func:`parse` turns each into a typed request. What needs the store is
handed to the worker's loop thread, which owns it, and answered from there. While a task
waits for a child execution its slot is lent out, so a handler waiting for its children
never starves them of slots."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ordo import engine
from ordo.clock import Clock
from ordo.errors import OrdoError, StoreUnavailable
from ordo.masking import forms, mask_value, masked
from ordo.model import Outcome, State, Task
from ordo.runners import RunnerSet
from ordo.runners.base import RunContext
from ordo.store import Store
from ordo.store.records import Claim

logger = logging.getLogger(__name__)

Answer = dict[str, Any]  # what goes back to the handler, as JSON


@dataclass
class Running:
    """An attempt running on one of the worker's threads."""

    claim: Claim
    context: RunContext
    cancel_reason: str | None = None
    waiting: int = 0  # calls blocked on a child execution: the slot is lent out meanwhile
    calls: int = 0  # this.connect calls made so far (each a task run of its own)


# -- the requests the loop answers ---------------------------------------------------
@dataclass(frozen=True)
class StartChild:
    """``this.flow(...)``: start a child execution (waiting for it is a :class:`WaitChild`)."""

    flow: str
    revision: int | None
    inputs: Mapping[str, Any]


@dataclass(frozen=True)
class WaitChild:
    """``child.wait()``: answered when the child execution ends, whoever ends it."""

    execution_id: int


@dataclass(frozen=True)
class StartFlowTask:
    """A flow task whose function ``run_if`` answered RUN: the loop starts its child."""

    context: RunContext


@dataclass(frozen=True)
class ConnectSetup:
    """``this.connect(...)``, first half: what to run (the connection looked up)."""

    connection: str | None
    type: str | None
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class RecordCall:
    """``this.connect(...)``, second half: record the call as a task run."""

    task_id: str
    started: float
    outcome: Outcome


@dataclass(frozen=True)
class LookUp:
    """``system.flow``, ``system.connection``, ``system.execution``: read-only."""

    request: Mapping[str, Any]


Request = StartChild | WaitChild | StartFlowTask | ConnectSetup | RecordCall | LookUp
LOOK_UPS = ("flow_info", "connection", "execution")


@dataclass(frozen=True)
class Connect:
    """``this.connect(...)`` as asked: run on the task's own thread."""

    setup: ConnectSetup


@dataclass(frozen=True)
class ReadSecret:
    """``system.secret(name)``: answered on the task's own thread."""

    name: str


def parse(request: Mapping[str, Any]) -> Request | Connect | ReadSecret | Answer:
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
            )
        if op == "wait":
            return WaitChild(_integer(op, "id", request.get("id")))
    except _Bad as exc:
        return {"error": str(exc)}
    if op == "connect":
        fields = request.get("fields") or {}
        name, kind = request.get("connection"), request.get("type")
        return Connect(ConnectSetup(name and str(name), kind and str(kind), fields))
    if op == "secret":
        return ReadSecret(str(request.get("name")))
    if op in LOOK_UPS:
        return LookUp(request)
    return {"error": f"unknown request {op!r}"}


class _Bad(ValueError):
    pass


def _integer(op: str, name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Bad(f"a {op} request's {name} must be an integer, found {value!r}") from None


@dataclass
class Call:
    """A task's request, answered by the loop thread."""

    running: Running
    request: Request
    answer: Future[Answer] = field(default_factory=Future)


class TaskCalls:
    """Answers the calls of running attempts. ``start_flow_task`` starts a flow task's
    child once its ``run_if`` answered RUN (loop thread)."""

    def __init__(
        self,
        store: Store,
        runners: RunnerSet,
        clock: Clock,
        worker_id: str,
        *,
        wake: Callable[[], None],
        evaluate: engine.Evaluator,
        start_flow_task: Callable[[Running, RunContext], None],
    ) -> None:
        self.store = store
        self.runners = runners
        self.clock = clock
        self.worker_id = worker_id
        self.wake = wake
        self.evaluate = evaluate
        self.start_flow_task = start_flow_task
        self._calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._waiters: dict[int, list[Call]] = {}  # child execution id -> waiting calls

    @property
    def waiting(self) -> bool:
        """Calls wait for child executions (which other workers may end)."""
        return bool(self._waiters)

    def call(self, running: Running, request: Mapping[str, Any]) -> Answer:
        """Answer a running task's JSON request; runs on its thread, blocks until
        answered. ``connect`` and ``secret`` run here; the rest is done by the loop."""
        parsed = parse(request)
        if isinstance(parsed, dict):
            return parsed
        if isinstance(parsed, Connect):
            return self._connect(running, parsed.setup)
        if isinstance(parsed, ReadSecret):
            return _secret(parsed.name, running)
        if isinstance(parsed, StartChild):  # child inputs are stored: masked
            inputs = mask_value(dict(parsed.inputs), running.context.secrets)
            parsed = StartChild(parsed.flow, parsed.revision, inputs)
        return self.ask(running, parsed)

    def ask(self, running: Running, request: Request) -> Answer:
        """Have the loop answer ``request``; blocks until it does (or the task is
        stopped while it waits)."""
        call = Call(running, request)
        waits = isinstance(request, WaitChild | StartFlowTask)
        if waits:
            running.waiting += 1
        self._calls.put(call)
        self.wake()
        try:
            while True:
                try:
                    return call.answer.result(timeout=0.1)
                except TimeoutError:
                    if running.context.cancel.is_set():
                        return {"error": "the task was stopped while waiting"}
        finally:
            if waits:
                running.waiting -= 1
                self.wake()

    def _connect(self, running: Running, setup: ConnectSetup) -> Answer:
        """``this.connect``: run one sql or http call with the task's log, then have the
        loop record it as a task run of this execution."""
        lookup = self.ask(running, setup)
        if "error" in lookup:
            return lookup
        parent, claim = running.context, running.claim
        kind, fields = lookup["type"], lookup["fields"]
        running.calls += 1
        number = running.calls
        name = f"{claim.task_id}.connect" + (f".{number}" if number > 1 else "")
        task = Task(name, kind, spec=fields)
        ctx = RunContext(
            claim.execution_id,
            claim.task_run_id,
            claim.attempt_id,
            1,
            task,
            fields,
            {},
            {},
            parent.base_dir,
            parent.log,
            timeout=parent.timeout,
            cancel=parent.cancel,
            secrets=parent.secrets + forms(lookup.get("secrets", ())),
        )
        started = self.clock.now()
        try:
            outcome = self.runners.get(kind).run(ctx)
        except Exception as exc:
            logger.exception("runner %s crashed", kind)
            outcome = Outcome(State.FAILED, reason="error", error=f"internal error: {exc!r}")
        outcome = masked(outcome, ctx.secrets)
        self.ask(running, RecordCall(task.id, started, outcome))
        return {
            "state": outcome.state.value,
            "outputs": dict(outcome.outputs),
            "message": outcome.error,
        }

    def serve(self) -> None:
        """Answer what handlers asked for (loop thread)."""
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                answer = self._answer(call)
            except StoreUnavailable:
                self._calls.put(call)  # asked again after the reconnect
                raise
            except OrdoError as exc:
                answer = {"error": str(exc)}
            if answer is not None:
                call.answer.set_result(answer)

    def _answer(self, call: Call) -> Answer | None:
        request, claim = call.request, call.running.claim
        match request:
            case StartChild(flow, revision, inputs):
                child = engine.start_child(
                    self.store,
                    claim,
                    flow,
                    inputs,
                    self.clock.now(),
                    revision=revision,
                    wait=False,
                    evaluate=self.evaluate,
                )
                return {"id": child}
            case WaitChild(execution_id):
                self._waiters.setdefault(execution_id, []).append(call)
                self.answer_waiters()
                return None
            case StartFlowTask(context):
                self.start_flow_task(call.running, context)
                return {}
            case ConnectSetup(connection, kind, fields):
                wire = {"connection": connection, "type": kind, "fields": fields}
                return engine.connect_setup(self.store, wire)
            case RecordCall(task_id, started, outcome):
                now = self.clock.now()
                self.store.record_call(claim, task_id, self.worker_id, started, outcome, now)
                return {}
            case LookUp(wire):
                return engine.look_up(self.store, claim, wire)

    def answer_waiters(self) -> None:
        """Tell handlers waiting for child executions that ended (by anyone)."""
        if not self._waiters:
            return
        for child_id, state in self.store.ended_among(list(self._waiters)).items():
            execution = self.store.get_execution(child_id)
            answer = {
                "state": state.value,
                "outputs": dict(execution.outputs or {}),
                "reason": execution.reason,
            }
            for call in self._waiters.pop(child_id):
                call.answer.set_result(answer)


def _secret(name: str, running: Running) -> Answer:
    """``system.secret(name)``: from the secrets decrypted for this attempt (whose values
    are masked in all it reports)."""
    try:
        return {"value": running.context.vault.get(name)}
    except OrdoError as exc:
        return {"error": f"system.secret: {exc}"}
