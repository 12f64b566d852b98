"""The worker: claim -> run -> report, with leases, heartbeats and batched writes.

One loop thread owns the store connection. Each iteration is one short write
transaction that stores buffered log lines, records every outcome that came in (which
also makes dependents ready or schedules retries), stops executions past their timeout,
and claims as many ready task runs as there are free slots. Runners execute in a pool of
``slots`` threads and hand their outcome back through a queue, so the store is only ever
touched by the loop thread.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from ordo import engine
from ordo.clock import Clock, SystemClock
from ordo.model import Outcome, State
from ordo.runners import RunnerSet
from ordo.runners.base import RunContext
from ordo.store import Store
from ordo.store.records import Claim, NewLog, RecordResult

logger = logging.getLogger(__name__)


class Listener(Protocol):
    """Told what the worker does, for progress displays. Called on the loop thread."""

    def started(self, claim: Claim) -> None: ...

    def finished(self, claim: Claim, outcome: Outcome, retrying: bool) -> None: ...


class _Silent:
    def started(self, claim: Claim) -> None:
        pass

    def finished(self, claim: Claim, outcome: Outcome, retrying: bool) -> None:
        pass


@dataclass
class WorkerSettings:
    slots: int = os.cpu_count() or 2
    lease_seconds: float = 30.0
    heartbeat_every: float = 10.0
    log_flush_every: float = 0.2
    kill_grace: float = 5.0
    max_log_bytes: int = 10 * 1024 * 1024  # per attempt; the rest is dropped with a marker
    log_batch_lines: int = 2000  # buffered lines that wake the loop to write them early
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )


@dataclass
class _Running:
    claim: Claim
    context: RunContext
    cancel_reason: str | None = None


class Worker:
    """Runs ready task runs from ``store`` with ``runners``. Not thread-safe: one loop."""

    def __init__(
        self,
        store: Store,
        runners: RunnerSet,
        *,
        settings: WorkerSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        env: Mapping[str, str] | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.store = store
        self.runners = runners
        self.settings = settings or WorkerSettings()
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.env = dict(os.environ if env is None else env)
        self.listener: Listener = listener or _Silent()
        self._events: queue.SimpleQueue[tuple[Claim, Outcome]] = queue.SimpleQueue()
        self._logs: list[NewLog] = []
        self._logs_lock = threading.Lock()
        self._running: dict[int, _Running] = {}
        self._pool = ThreadPoolExecutor(self.settings.slots, thread_name_prefix="ordo-task")
        self._stop_reason: str | None = None

    # -- public --------------------------------------------------------------------
    def run_execution(self, execution_id: int) -> State:
        """Work on ``execution_id`` only, until it ends; returns its final state."""
        return self._loop(execution_id)

    def interrupt(self, reason: str) -> None:
        """Ask the loop (from a signal handler) to stop the execution it is working on."""
        self._stop_reason = reason
        self._events.put((_WAKE, _WAKE_OUTCOME))

    def close(self) -> None:
        for running in self._running.values():
            running.context.cancel.set()
        self._pool.shutdown(wait=True)
        self.runners.close()

    # -- the loop --------------------------------------------------------------------
    def _loop(self, execution_id: int) -> State:
        next_heartbeat = self.clock.now() + self.settings.heartbeat_every
        deadline = self.store.get_execution(execution_id).deadline
        done: list[tuple[Claim, Outcome]] = []
        while True:
            now = self.clock.now()
            result, claims = self._step(done, now, execution_id)
            for claim, outcome in done:  # told after the commit, never inside it
                self.listener.finished(claim, outcome, claim.task_run_id in result.retries)
            done = []
            if execution_id in result.ended_executions:
                return result.ended_executions[execution_id]
            for claim in claims:
                self._launch(claim)
            if now >= next_heartbeat:
                self._heartbeat(now)
                next_heartbeat = now + self.settings.heartbeat_every
            self._wait(done, execution_id, min(next_heartbeat, deadline or next_heartbeat))

    def _step(
        self, done: list[tuple[Claim, Outcome]], now: float, execution_id: int
    ) -> tuple[RecordResult, list[Claim]]:
        with self._logs_lock:
            logs, self._logs = self._logs, []
        settings = self.settings
        with self.store.transaction():
            self.store.add_logs(logs)
            result = self.store.record_outcomes(done, now, self.rng)
            if self._stop_reason is not None:
                self._stop(execution_id, self._stop_reason, now, result)
            if execution_id in self.store.expired_executions(now):
                self._stop(execution_id, "timeout", now, result)
            if execution_id in result.ended_executions:
                return result, []
            free = settings.slots - len(self._running)
            claims = self.store.claim(
                settings.worker_id, free, now, settings.lease_seconds, execution_id=execution_id
            )
        return result, claims

    def _stop(self, execution_id: int, reason: str, now: float, result: RecordResult) -> None:
        """Fail an execution: its unstarted task runs end SKIPPED, running attempts here
        are stopped and end FAILED with the same reason."""
        self._stop_reason = None
        message = "execution timed out" if reason == "timeout" else reason
        sub = self.store.fail_execution(execution_id, message, now)
        result.ended_executions.update(sub.ended_executions)
        for running in self._running.values():
            if running.claim.execution_id == execution_id and running.cancel_reason is None:
                running.cancel_reason = reason
                running.context.cancel.set()

    def _launch(self, claim: Claim) -> None:
        log = _AttemptLog(self, claim)
        prepared = engine.prepare(self.store, claim, log, self.env)
        self.listener.started(claim)
        if prepared.outcome is not None:
            log("stderr", prepared.outcome.error or "")
            self._events.put((claim, prepared.outcome))
            return
        assert prepared.context is not None
        prepared.context.kill_grace = self.settings.kill_grace
        self._running[claim.attempt_id] = _Running(claim, prepared.context)
        self._pool.submit(self._run, claim, prepared.context)

    def _run(self, claim: Claim, ctx: RunContext) -> None:
        try:
            outcome = self.runners.get(ctx.task.type).run(ctx)
        except Exception as exc:  # a runner bug must not lose the attempt
            logger.exception("runner %s crashed", ctx.task.type)
            outcome = Outcome(State.FAILED, reason="error", error=f"internal error: {exc!r}")
        self._events.put((claim, outcome))

    def _wait(self, done: list[tuple[Claim, Outcome]], execution_id: int, due_at: float) -> None:
        """Block until an outcome arrives or something is due; collect all outcomes."""
        if done:
            return
        now = self.clock.now()
        due = [due_at]
        if self._running:
            due.append(now + self.settings.log_flush_every)
        if len(self._running) < self.settings.slots:  # a retry waiting for its delay
            next_ready = self.store.next_ready_time(execution_id)
            if next_ready is not None:
                due.append(max(next_ready, now))
        item = self.clock.wait(self._events, min(due) - now)
        while item is not None:
            self._collect(item, done)
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                item = None

    def _collect(self, item: tuple[Claim, Outcome], done: list[tuple[Claim, Outcome]]) -> None:
        claim, outcome = item
        if claim is _WAKE:
            return
        running = self._running.pop(claim.attempt_id, None)
        if running is not None and running.cancel_reason == "timeout":
            outcome = Outcome(
                State.FAILED,
                exit_code=outcome.exit_code,
                reason="timeout",
                error="execution timed out",
                outputs=outcome.outputs,
                metrics=outcome.metrics,
                cpu_seconds=outcome.cpu_seconds,
                peak_rss_kb=outcome.peak_rss_kb,
            )
        done.append((claim, outcome))

    def _heartbeat(self, now: float) -> None:
        ids = list(self._running)
        self.store.heartbeat(self.settings.worker_id, ids, now + self.settings.lease_seconds)


class _AttemptLog:
    """The log sink of one attempt: timestamps lines, buffers them for the loop (waking it
    when many wait) and stops keeping output past ``max_log_bytes`` with one marker."""

    def __init__(self, worker: Worker, claim: Claim) -> None:
        self.worker = worker
        self.claim = claim
        self.size = 0
        self.truncated = False

    def __call__(self, stream: str, line: str) -> None:
        worker = self.worker
        limit = worker.settings.max_log_bytes
        if self.truncated:
            return
        self.size += len(line) + 1
        if self.size > limit:
            self.truncated = True
            stream = "stderr"
            line = f"[ordo: output truncated after {limit} bytes; the rest was not kept]"
        claim = self.claim
        entry = NewLog(claim.execution_id, claim.attempt_id, worker.clock.now(), stream, line)
        with worker._logs_lock:
            worker._logs.append(entry)
            wake = len(worker._logs) == worker.settings.log_batch_lines
        if wake:
            worker._events.put((_WAKE, _WAKE_OUTCOME))


_WAKE = Claim(0, 0, 0, 0, "", 0, 0.0)
_WAKE_OUTCOME = Outcome(State.FAILED)
