"""Calls into ordo from running tasks: a python handler's ``this.flow``, ``wait``,
``this.connect`` and ``system.*`` arrive on the task's thread (through its python host);
what needs the store is handed to the worker's loop thread, which owns it, and answered
from there. While a task waits for a child execution its slot is lent out, so a handler
waiting for its children never starves them of slots."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
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


@dataclass
class Running:
    """An attempt running on one of the worker's threads."""

    claim: Claim
    context: RunContext
    cancel_reason: str | None = None
    waiting: int = 0  # calls blocked on a child execution: the slot is lent out meanwhile
    calls: int = 0  # this.connect calls made so far (each a task run of its own)


@dataclass
class Call:
    """A task's request, answered by the loop thread."""

    claim: Claim
    request: dict[str, Any]
    answer: Future[dict[str, Any]] = field(default_factory=Future)


class TaskCalls:
    """Answers the calls of the attempts in ``running`` (the worker's own map)."""

    def __init__(
        self,
        store: Store,
        runners: RunnerSet,
        clock: Clock,
        worker_id: str,
        running: dict[int, Running],
        *,
        wake: Callable[[], None],
        evaluate: engine.Evaluator,
        start_flow_task: Callable[[Claim, RunContext], None],
    ) -> None:
        self.store = store
        self.runners = runners
        self.clock = clock
        self.worker_id = worker_id
        self.running = running
        self.wake = wake
        self.evaluate = evaluate
        self.start_flow_task = start_flow_task
        self._calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._waiters: dict[int, list[Call]] = {}  # child execution id -> waiting calls

    @property
    def waiting(self) -> bool:
        """Calls wait for child executions (which other workers may end)."""
        return bool(self._waiters)

    def call(self, claim: Claim, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a running task's request; runs on its thread, blocks until answered.
        ``connect`` runs here; the rest is done by the loop thread."""
        running = self.running.get(claim.attempt_id)
        if request.get("op") == "connect":
            return self._connect(claim, request, running)
        if request.get("op") == "secret":
            return _secret(request, running)
        if request.get("op") == "flow" and running is not None:  # child inputs are stored
            inputs = mask_value(request.get("inputs") or {}, running.context.secrets)
            request = {**request, "inputs": inputs}
        call = Call(claim, request)
        waits = request.get("op") in ("wait", "start_flow_task")
        if waits and running is not None:
            running.waiting += 1
        self._calls.put(call)
        self.wake()
        try:
            while True:
                try:
                    return call.answer.result(timeout=0.1)
                except TimeoutError:
                    if running is not None and running.context.cancel.is_set():
                        return {"error": "the task was stopped while waiting"}
        finally:
            if waits and running is not None:
                running.waiting -= 1
                self.wake()

    def _connect(
        self, claim: Claim, request: dict[str, Any], running: Running | None
    ) -> dict[str, Any]:
        """``this.connect``: run one sql or http call with the task's log, then have the
        loop record it as a task run of this execution."""
        lookup = self.call(claim, {**request, "op": "connect_setup"})
        if "error" in lookup:
            return lookup
        parent = running.context if running is not None else None
        kind, fields = lookup["type"], lookup["fields"]
        number = 1
        if running is not None:
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
            parent.base_dir if parent else ".",
            parent.log if parent else _discard,
            timeout=parent.timeout if parent else None,
            cancel=parent.cancel if parent else threading.Event(),
            secrets=(parent.secrets if parent else ()) + forms(lookup.get("secrets", ())),
        )
        started = self.clock.now()
        try:
            outcome = self.runners.get(kind).run(ctx)
        except Exception as exc:
            logger.exception("runner %s crashed", kind)
            outcome = Outcome(State.FAILED, reason="error", error=f"internal error: {exc!r}")
        outcome = masked(outcome, ctx.secrets)
        record = {"op": "record_call", "task_id": task.id, "started": started, "outcome": outcome}
        self.call(claim, record)
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

    def _answer(self, call: Call) -> dict[str, Any] | None:
        request, claim = call.request, call.claim
        op = request.get("op")
        now = self.clock.now()
        if op == "flow":
            revision = request.get("revision")
            child = engine.start_child(
                self.store,
                claim,
                str(request["flow"]),
                request.get("inputs") or {},
                now,
                revision=int(revision) if revision is not None else None,
                wait=False,
                evaluate=self.evaluate,
                namespace=request.get("namespace"),
            )
            return {"id": child}
        if op == "wait":
            self._waiters.setdefault(int(request["id"]), []).append(call)
            self.answer_waiters()
            return None
        if op == "start_flow_task":
            self.running.pop(claim.attempt_id, None)
            self.start_flow_task(claim, request["context"])
            return {}
        if op == "connect_setup":
            return engine.connect_setup(self.store, request, claim)
        if op == "record_call":
            outcome = request["outcome"]
            started = float(request["started"])
            self.store.record_call(claim, request["task_id"], self.worker_id, started, outcome, now)
            return {}
        return engine.look_up(self.store, claim, request)

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


def _secret(request: dict[str, Any], running: Running | None) -> dict[str, Any]:
    """``system.secret(name)``: from the secrets decrypted for this attempt (whose values
    are masked in all it reports)."""
    if running is None:
        return {"error": "system.secret: the task is not running here"}
    try:
        return {"value": running.context.vault.get(str(request.get("name")))}
    except OrdoError as exc:
        return {"error": f"system.secret: {exc}"}


def _discard(stream: str, line: str) -> None:
    pass
