"""Calls into ordo from running tasks: a python handler's ``this.flow``, ``wait``,
``this.connect`` and ``system.*``, a flow function's ``@task`` calls, arrive on the
task's thread (through its python host) as JSON requests; :func:`parse` turns each into
a typed request. What needs the store is handed to the worker's loop thread, which owns
it, and answered from there. While a task waits for a child execution or a step its
slot is lent out, so a handler waiting for its children never starves them of slots.

Calls that have an effect or a value the code may depend on are **steps**, numbered by
the host in the order the attempt makes them (:mod:`ordo.store.steps`): run again (a
retry, a restart, a resume), the code finds each completed step and gets its answer
again instead of doing it again; a step the code now makes differently is a
non-deterministic replay, refused with both calls named."""

from __future__ import annotations

import contextlib
import logging
import queue
import random
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from msgspec import Struct, field

from ordo import engine
from ordo.clock import Clock
from ordo.errors import Conflict, OrdoError, StoreUnavailable
from ordo.masking import forms, mask_value, masked
from ordo.model import Outcome, State, Task
from ordo.runners import RunnerSet
from ordo.runners.base import LogSink, RunContext, crashed
from ordo.runners.process import AttemptFiles
from ordo.store import Store
from ordo.store.records import Claim
from ordo.store.steps import StepRow
from ordo.worker.events import Reported

if TYPE_CHECKING:
    from ordo.worker.requests import Answer, ConnectSetup, EndStep, Request, TaskStep

logger = logging.getLogger(__name__)
STARTED_KEPT = 10_000  # steps started by this worker kept for their launch


class Running(Struct):
    """An attempt running on one of the worker's threads."""

    claim: Claim
    context: RunContext
    cancel_reason: str | None = None
    waiting: int = 0  # calls blocked on a child execution: the slot is lent out meanwhile
    calls: int = 0  # this.connect calls made so far (each a task run of its own)
    #: a flow function's ``@task`` attempts running in its own host now, by attempt id
    here: dict[int, Here] = field(default_factory=dict)
    logs: dict[int, LogSink] = field(default_factory=dict)  # theirs, until first used
    ended: bool = False  # its runner returned: nothing more runs in its host
    since: float = 0.0  # when it was launched (the worker's clock)
    queued: bool = False  # sent to a host behind another attempt, not started yet
    #: a plain python attempt's flow folder and function (or script), once asked for
    function: tuple[str, str] | None = None


class Here(Struct):
    """A ``@task`` attempt its flow function runs in its own host: its ``running`` (in
    the flow function's slot) and the ``files`` of its outputs and metrics."""

    running: Running
    files: AttemptFiles


class Call(Struct):
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
        here: HereSteps | None = None,
        told: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.runners = runners
        self.clock = clock
        self.worker_id = worker_id
        self.wake = wake
        self.evaluate = evaluate
        self.start_flow_task = start_flow_task
        self.here = here
        self.told = told or wake  # an end of a @task run in its flow's host came
        self._calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
        #: ``@task`` calls: served inside the loop's step transaction, which then claims
        #: their task runs too (one commit fewer per step)
        self._step_calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._waiters: dict[int, list[Call]] = {}  # child execution id -> waiting calls
        self._steps: dict[int, list[Call]] = {}  # a step's task run id -> waiting calls
        self._served: list[Call] = []  # step calls served in the open step transaction
        #: ends of @task attempts run in their flow function's host, to record in the
        #: next step (before any later call of the flow function is answered)
        self._ended: queue.SimpleQueue[Reported] = queue.SimpleQueue()
        #: the steps whose task runs this worker started, by task run id, until one of
        #: its claims is launched (read there; another worker may run them: the
        #: oldest are forgotten)
        self.started: dict[int, StepRow] = {}

    @property
    def waiting(self) -> bool:
        """Calls wait for child executions or steps (which other workers may end)."""
        return bool(self._waiters or self._steps)

    def call(self, running: Running, request: Mapping[str, Any]) -> Answer:
        """Answer a running task's JSON request; runs on its thread, blocks until
        answered. ``connect`` and ``secret`` run here; the rest is done by the loop."""
        from ordo.worker import requests as rq  # (first used when a task calls)

        acting = request.get("as")  # a @task its flow function runs in its host calls
        if acting is not None and acting in running.here:
            running = running.here[acting].running
        parsed = rq.parse(request)
        if isinstance(parsed, dict):
            return parsed
        if isinstance(parsed, rq.EndStep):
            return self._end_here(running, parsed)
        if isinstance(parsed, rq.Connect):
            return self._connect(running, parsed.setup)
        if isinstance(parsed, rq.ReadSecret):
            return _secret(parsed.name, running)
        if isinstance(parsed, rq.StartChild):  # child inputs are stored: masked
            inputs = mask_value(dict(parsed.inputs), running.context.secrets)
            parsed = msgspec.structs.replace(parsed, inputs=inputs)
        return self.ask(running, parsed)

    def ask(self, running: Running, request: Request) -> Answer:
        """Have the loop answer ``request``; blocks until it does (or the task is
        stopped while it waits)."""
        from ordo.worker import requests as rq  # (first used when a task calls)

        call = Call(running, request)
        waits = isinstance(request, rq.WaitChild | rq.StartFlowTask | rq.WaitStep) or (
            isinstance(request, rq.TaskStep) and request.wait
        )
        if waits:
            running.waiting += 1
        steps = isinstance(request, rq.TaskStep | rq.TaskSteps)
        (self._step_calls if steps else self._calls).put(call)
        self.wake()
        answer: Answer = {}
        try:
            while True:
                try:
                    answer = call.answer.result(timeout=0.1)
                    return answer
                except TimeoutError:
                    if running.context.cancel.is_set():
                        return {"error": "the task was stopped while waiting"}
        finally:
            if waits:
                running.waiting -= 1
                if "attempt" not in answer:  # (a @task to run in its host: no slot freed)
                    self.wake()

    def _end_here(self, running: Running, end: EndStep) -> Answer:
        """A ``@task`` attempt run in the flow function's host ended: reported to the
        loop; a success is only told, anything else answered once its task run has
        ended (after its retries)."""
        from ordo.worker import requests as rq  # (first used when a task calls)

        here = running.here.pop(end.attempt_id, None)
        if here is None or self.here is None:
            return {"error": f"attempt {end.attempt_id} is not running in this host"}
        self.here.end(here, end.reply)
        if end.tell:
            return {}
        return self.ask(running, rq.WaitStep(here.running.claim.task_run_id))

    def _connect(self, running: Running, setup: ConnectSetup) -> Answer:
        """``this.connect``: run one sql or http call with the task's log, then have the
        loop record it as an execution of kind CONNECTION (its log lines too)."""
        from ordo.worker import requests as rq  # (first used when a task calls)

        lookup = self.ask(running, setup)
        if "error" in lookup:
            return lookup
        if "replayed" in lookup:  # the step had completed: its answer again
            replayed: Answer = lookup["replayed"]
            return replayed
        parent, claim = running.context, running.claim
        kind, fields = lookup["type"], lookup["fields"]
        running.calls += 1
        number = running.calls
        name = f"{claim.task_id}.connect" + (f".{number}" if number > 1 else "")
        task = Task(name, kind, spec=fields)
        said: list[tuple[float, str, str]] = []  # its lines: its own log too

        def tee(stream: str, line: str) -> None:
            said.append((self.clock.now(), stream, line))
            parent.log(stream, line)

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
            tee,
            timeout=parent.timeout,
            cancel=parent.cancel,
            secrets=parent.secrets + forms(lookup.get("secrets", ())),
        )
        started = self.clock.now()
        try:
            outcome = self.runners.get(kind).run(ctx)
        except Exception as exc:
            logger.exception("runner %s crashed", kind)
            outcome = crashed(exc)
        outcome = masked(outcome, ctx.secrets)
        step = setup.connection or setup.type or "connect"
        lines = tuple(said)
        self.ask(running, rq.RecordCall(task.id, started, outcome, setup.number, step, kind, lines))
        return {
            "state": outcome.state.value,
            "outputs": dict(outcome.outputs),
            "message": outcome.error,
        }

    def report(self, claim: Claim, outcome: Outcome) -> None:
        """A ``@task`` attempt run in its flow function's host ended: recorded in the
        loop's next step, before any later call of the flow function is answered."""
        self._ended.put(Reported(claim, outcome))
        self.told()

    def take_steps(self) -> list[Reported]:
        """Before a step (loop thread): the ``@task`` calls that came in are its own
        (:meth:`serve_steps` serves them), then the ends of attempts run in flow
        functions' hosts, to record in it: every end told before a call it serves."""
        while True:
            try:
                self._served.append(self._step_calls.get_nowait())
            except queue.Empty:
                break
        return _drain(self._ended)

    @property
    def serving(self) -> bool:
        """The step serves ``@task`` calls (:meth:`take_steps` took some)."""
        return bool(self._served)

    def serve_steps(self) -> Callable[[], None]:
        """Start the task runs of the ``@task`` calls taken by :meth:`take_steps`, inside
        the caller's transaction (loop thread); what answers them once it has
        committed. Should it roll back, ``put_back`` asks them again."""
        served: list[tuple[Call, Answer | None]] = []
        for call in self._served:
            served.append((call, None))
            try:
                served[-1] = (call, self._answer(call))
            except StoreUnavailable:
                raise
            except OrdoError as exc:  # raised before anything of the call was written
                served[-1] = (call, _error(exc))

        def answer() -> None:
            self._served = []
            for call, found in served:
                if found is not None and isinstance(found.get("here"), Claim):
                    assert self.here is not None
                    found = self.here.start(call.running, found.pop("here"), call.request)
                if found is not None:
                    call.answer.set_result(found)

        return answer

    def put_back(self) -> None:
        """The step transaction rolled back: the ``@task`` calls it served are asked
        again (their waiters too)."""
        for call in self._served:
            for waiting in self._steps.values():
                if call in waiting:
                    waiting.remove(call)
            self._step_calls.put(call)
        self._steps = {k: v for k, v in self._steps.items() if v}
        self._served = []

    def serve(self) -> None:
        """Answer what handlers asked for (loop thread). Not while ends of attempts run
        in flow functions' hosts wait to be recorded (one may have come before a call):
        the loop looks again at once, and records them first."""
        calls: list[Call] = _drain(self._calls)
        if calls and not self._ended.empty():
            for call in calls:
                self._calls.put(call)
            self.wake()
            return
        for index, call in enumerate(calls):
            try:
                answer = self._answer(call)
            except StoreUnavailable:
                for again in calls[index:]:  # asked again after the reconnect
                    self._calls.put(again)
                raise
            except OrdoError as exc:
                answer = _error(exc)
            if answer is not None:
                call.answer.set_result(answer)

    def _answer(self, call: Call) -> Answer | None:
        from ordo.worker import requests as rq  # (first used when a task calls)

        request, claim = call.request, call.running.claim
        match request:
            case rq.StartChild(flow, revision, inputs, namespace, number):
                if number is not None:
                    done = self._replayed(claim, number, "flow", flow)
                    if done is not None and done.child_id is not None:
                        return {"id": self._child_again(claim, done)}
                child = engine.start_child(
                    self.store,
                    claim,
                    flow,
                    inputs,
                    self.clock.now(),
                    revision=revision,
                    wait=False,
                    evaluate=self.evaluate,
                    namespace=namespace,
                )
                if number is not None:
                    self.store.record_step(
                        claim, number, "flow", flow, self.clock.now(), child_id=child
                    )
                return {"id": child}
            case rq.WaitChild(execution_id):
                self._waiters.setdefault(execution_id, []).append(call)
                self.answer_waiters()
                return None
            case rq.StartFlowTask(context):
                self.start_flow_task(call.running, context)
                return {}
            case rq.ConnectSetup(connection, kind, fields, shape, namespace, number):
                if number is not None:
                    name = connection or kind or "connect"
                    done = self._replayed(claim, number, "connect", name)
                    if done is not None and done.run_id is not None:
                        state, _, outputs = self.store.step_result(done.run_id)
                        if state is State.SUCCESS:
                            answer = {"state": state.value, "outputs": outputs, "message": None}
                            return {"replayed": answer}
                wire = {
                    "connection": connection,
                    "type": kind,
                    "fields": fields,
                    "shape": shape,
                    "namespace": namespace,
                }
                return engine.connect_setup(self.store, wire, claim)
            case rq.RecordCall(_, started, outcome, number, step, kind, lines):
                now = self.clock.now()
                run = self.store.record_connection(
                    claim, step, kind, self.worker_id, started, outcome, now, random.Random(), lines
                )
                if number is not None:
                    self.store.record_step(claim, number, "connect", step, now, run_id=run)
                return {}
            case rq.LookUp(wire):
                return engine.look_up(self.store, claim, wire)
            case rq.TaskStep():
                begun = self._task_step(claim, request)
                if not request.wait or "state" in begun or "error" in begun or "here" in begun:
                    return begun
                self._steps.setdefault(int(begun["run"]), []).append(call)
                self.answer_waiters()  # (it may have ended already: run by another)
                return None
            case rq.TaskSteps(steps):
                with self.store.transaction():  # their task runs start together
                    return {"answers": [self._task_step(claim, s) for s in steps]}
            case rq.WaitStep(run_id, _):
                self._steps.setdefault(run_id, []).append(call)
                self.answer_waiters()
                return None
            case rq.ValueStep(kind, number):
                done = self._replayed(claim, number, kind, kind)
                if done is not None:
                    return {"value": done.value}
                now = self.clock.now()
                value: Any = (
                    datetime.fromtimestamp(now, UTC).isoformat()
                    if kind == "now"
                    else random.random()
                )
                self.store.record_step(claim, number, kind, kind, now, value=value)
                return {"value": value}

    # -- steps -------------------------------------------------------------------------
    def _replayed(self, claim: Claim, number: int, kind: str, name: str) -> StepRow | None:
        """Step ``number`` as recorded before, if it was; ReplayError when the code now
        makes another call at that step."""
        done = self.store.step(claim.task_run_id, number)
        if done is None:
            return None
        if (done.kind, done.name) != (kind, name):
            raise ReplayError(
                f"non-deterministic replay: step {number} was {_shown(done.kind, done.name)}, "
                f"now is {_shown(kind, name)} (steps must come in the same order every "
                "time the code runs: see docs/python.md)"
            )
        return done

    def _child_again(self, claim: Claim, done: StepRow) -> int:
        """A ``this.flow`` step run again: the same child execution; restarted in place
        when it ended badly and the caller is being run again."""
        assert done.child_id is not None
        child = self.store.get_execution(done.child_id)
        again = done.attempt_id != claim.attempt_id
        if again and child.state in (State.FAILED, State.KILLED):
            with contextlib.suppress(Conflict):  # nothing in it to run again: as it ended
                # in place, not adopted: the handler waits for it with child.wait()
                self.store.restart_execution(done.child_id, self.clock.now())
        return done.child_id

    def _task_step(self, claim: Claim, request: TaskStep) -> Answer:
        """A ``@task`` call: its task run, started now, or found as it was recorded."""
        flow = self.store.flow_of(claim.revision_id)
        task = flow._by_id.get(request.name)
        if task is None or not task.spec.get("step"):
            known = ", ".join(t.id for t in flow.steps) or "none"
            return {
                "error": f"task {request.name!r} is not a @task of this flow's file or of "
                f"the modules it imports from its folder (@tasks: {known})"
            }
        done = self._replayed(claim, request.number, "task", request.name)
        now = self.clock.now()
        if done is not None and done.run_id is not None:
            state, reason, outputs = self.store.step_result(done.run_id)
            if not state.terminal:
                return {"run": done.run_id}
            if state in (State.SUCCESS, State.WARNING) or done.attempt_id == claim.attempt_id:
                return _step_answer(done.run_id, state, reason, outputs)
            self.store.again_step(done, task, now)  # failed before: it runs again
            self.wake()
            return {"run": done.run_id}
        if request.bad is not None:  # its arguments cannot be stored: it fails as called
            failed = Outcome(State.FAILED, reason="error", error=request.bad)
            run = self.store.record_call(claim, task.id, self.worker_id, now, failed, now)
            return _step_answer(run, State.FAILED, request.bad, {})
        args = {"args": list(request.args), "kwargs": dict(request.kwargs)}
        step = self.store.start_step(claim, request.number, task, args, now)
        assert step.run_id is not None
        if request.here and self.here is not None and self.here.may_run(claim, task):
            taken = self.here.claim(step.run_id, now)  # in this transaction
            if taken is not None:  # started in the caller's host once committed
                return {"run": step.run_id, "here": taken}
        self.started[step.run_id] = step  # its launch here reads its arguments from it
        while len(self.started) > STARTED_KEPT:
            del self.started[next(iter(self.started))]
        self.wake()
        return {"run": step.run_id}

    def _also(self, run_ids: tuple[int, ...]) -> Answer:
        """The answers of those of these steps' task runs that have ended."""
        if not run_ids:
            return {}
        ended = {}
        for run_id, (state, _) in self.store.run_states(run_ids).items():
            if state.terminal:
                found, reason, outputs = self.store.step_result(run_id)
                ended[str(run_id)] = _step_answer(run_id, found, reason, outputs)
        return {"also": ended}

    def answer_waiters(self) -> None:
        """Tell handlers waiting for child executions or steps that ended (by anyone)."""
        if self._steps:
            from ordo.worker import requests as rq  # (first used when a task calls)

            for run_id, (state, _) in self.store.run_states(list(self._steps)).items():
                if not state.terminal:
                    continue
                found, reason, outputs = self.store.step_result(run_id)
                answer = _step_answer(run_id, found, reason, outputs)
                for call in self._steps.pop(run_id):
                    also = call.request.also if isinstance(call.request, rq.WaitStep) else ()
                    call.answer.set_result({**answer, **self._also(also)})
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


class HereSteps(Protocol):
    """How a flow function's ``@task`` calls run in its own host (the launcher)."""

    def may_run(self, caller: Claim, task: Task) -> bool:
        """Whether ``task`` may run in the host of the flow function of ``caller``."""

    def claim(self, run_id: int, now: float) -> Claim | None:
        """Claim the step's task run ``run_id`` for this worker, as launched (inside
        the loop's step transaction)."""

    def start(self, caller: Running, claim: Claim, request: Request) -> Answer:
        """Its attempt runs in the caller's host from now on (the claim committed):
        what the host needs to run it (loop thread)."""

    def end(self, here: Here, reply: Mapping[str, Any]) -> None:
        """It ended with the host's ``reply``: reported (the caller's thread)."""


def _drain(found: queue.SimpleQueue[Any]) -> list[Any]:
    taken = []
    while True:
        try:
            taken.append(found.get_nowait())
        except queue.Empty:
            return taken


def _error(exc: OrdoError) -> Answer:
    answer: Answer = {"error": str(exc)}
    if isinstance(exc, ReplayError):
        answer["replay"] = True
    return answer


def _step_answer(
    run_id: int, state: State, reason: str | None, outputs: Mapping[str, Any]
) -> Answer:
    """What a flow function's ``@task`` call gets: its state and what it returned."""
    return {"run": run_id, "state": state.value, "reason": reason, "value": outputs.get("return")}


def _shown(kind: str, name: str) -> str:
    """A step as the code made it, for messages."""
    if kind == "task":
        return f"{name}(...)"
    if kind in ("now", "random"):
        return f"this.{kind}()"
    return f"this.{kind}({name!r}, ...)"


class ReplayError(OrdoError):
    """A step made differently than when it was recorded."""


def _secret(name: str, running: Running) -> Answer:
    """``system.secret(name)``: from the secrets decrypted for this attempt (whose values
    are masked in all it reports)."""
    try:
        return {"value": running.context.vault.get(name)}
    except OrdoError as exc:
        return {"error": f"system.secret: {exc}"}
