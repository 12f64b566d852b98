"""The worker: claim -> run -> report, with leases, heartbeats and batched writes.

One loop thread owns the store connection. Each iteration is one short write
transaction that stores buffered log lines, records every outcome that came in (which
also makes dependents ready or schedules retries), stops executions past their timeout,
and claims as many ready task runs as there are free slots. Runners execute in a pool of
``slots`` threads and hand their outcome back through a queue, so the store is only ever
touched by the loop thread.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from ordo import engine
from ordo.clock import Clock, SystemClock
from ordo.errors import StoreError, StoreUnavailable
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
    queues: tuple[str, ...] = ("default",)  # served by serve(); run_execution takes any
    prefetch: int = 2  # claims beyond the free slots, started as soon as a slot frees
    grace: float = 30.0  # serve(): how long running attempts may finish after stop()
    reap_every: float = 15.0  # serve(): how often expired leases are looked for
    poll_every: float = 1.0  # serve() without notifications: how often to look for work
    notified_poll_every: float = 5.0  # with LISTEN/NOTIFY: a safety net only
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
        self._handed: list[Claim] = []
        self._unlaunched: collections.deque[Claim] = collections.deque()
        self._pool = ThreadPoolExecutor(self.settings.slots, thread_name_prefix="ordo-task")
        self._stop_reason: str | None = None
        self._stopping_at: float | None = None
        self._notified = False
        self._deadline: float | None = None
        self._delayed = False  # a retry of ours may be waiting for its delay

    # -- public --------------------------------------------------------------------
    def run_execution(self, execution_id: int) -> State:
        """Work on ``execution_id`` only (any queue), until it ends, whoever ends it;
        returns its final state. Other workers may help."""
        state = self._loop(execution_id)
        assert state is not None
        return state

    def serve(self) -> None:
        """Work on every execution's task runs of ``settings.queues`` until :meth:`stop`,
        registered in the workers table, reaping expired leases of dead workers."""
        s = self.settings
        now = self.clock.now()
        self.store.register_worker(s.worker_id, socket.gethostname(), os.getpid(), s.queues, now)
        logger.info("worker %s serving queues %s", s.worker_id, ",".join(s.queues))
        try:
            self._loop(None)
        finally:
            with contextlib.suppress(StoreError):
                self.store.worker_stopped(s.worker_id, self.clock.now())

    def stop(self) -> None:
        """Graceful stop (from a signal handler): claim nothing more, let running attempts
        finish within ``settings.grace``, then hand back what is left."""
        if self._stopping_at is None:
            self._stopping_at = self.clock.now() + self.settings.grace
        self._events.put((_WAKE, _WAKE_OUTCOME))

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
    def _loop(self, execution_id: int | None) -> State | None:
        s = self.settings
        now = self.clock.now()
        due = {
            "heartbeat": now + s.heartbeat_every,
            "reap": now if execution_id is None else _NEVER,
        }
        deadline = None if execution_id is None else self.store.get_execution(execution_id).deadline
        self._deadline = deadline
        listening = self.store.listen(lambda: self._events.put((_WAKE, _WAKE_OUTCOME)))
        self._notified = listening is not None
        done: list[tuple[Claim, Outcome]] = []
        try:
            while True:
                now = self.clock.now()
                try:
                    result, claims = self._step(done, now, execution_id)
                except StoreUnavailable as exc:
                    self._recover(exc, done)  # nothing was recorded: ``done`` is tried again
                    continue
                self._delayed = self._delayed or bool(result.retries)
                for claim, outcome in done:  # told after the commit, never inside it
                    self.listener.finished(claim, outcome, claim.task_run_id in result.retries)
                done = []
                try:
                    ended = self._after_step(now, due, execution_id, result, claims)
                    if ended is not None or (self._stopping_at is not None and not self._running):
                        return ended
                    self._wait(done, execution_id, min([*due.values(), deadline or _NEVER]))
                except StoreUnavailable as exc:
                    self._recover(exc, done)
        finally:
            if listening is not None:
                listening.close()

    def _after_step(
        self,
        now: float,
        due: dict[str, float],
        execution_id: int | None,
        result: RecordResult,
        claims: list[Claim],
    ) -> State | None:
        """Start what was claimed and do what is due; the final state when the
        execution worked on has ended."""
        ended = self._ended(execution_id, result, claims)
        if ended is not None:
            return ended
        self._unlaunched.extend(claims)
        self._launch_waiting()
        self._housekeeping(now, due, execution_id)
        self._hand_back_after_grace(now)
        return None

    def _ended(
        self, execution_id: int | None, result: RecordResult, claims: list[Claim]
    ) -> State | None:
        if execution_id is None:
            return None
        if execution_id in result.ended_executions:
            return result.ended_executions[execution_id]
        if not claims and not self._running and not self._unlaunched:  # ended elsewhere?
            state = self.store.get_execution(execution_id).state
            if state.terminal:
                return state
        return None

    def _step(
        self, done: list[tuple[Claim, Outcome]], now: float, execution_id: int | None
    ) -> tuple[RecordResult, list[Claim]]:
        with self._logs_lock:
            logs = list(self._logs)
        s = self.settings
        with self.store.transaction():
            self.store.add_logs(logs)
            result = self.store.record_outcomes(done, now, self.rng)
            if self._stopping_at is not None and self._unlaunched:
                self._handed.extend(self._unlaunched)
                self._unlaunched.clear()
            if self._handed:
                self.store.hand_back(self._handed, now)
            if self._stop_reason is not None and execution_id is not None:
                self._stop(execution_id, self._stop_reason, now, result)
            if execution_id is not None and self._deadline is not None and now >= self._deadline:
                self._deadline = None
                self._stop(execution_id, "timeout", now, result)
            claims: list[Claim] = []
            if self._stopping_at is None and execution_id not in result.ended_executions:
                claims = self.store.claim(
                    s.worker_id,
                    s.slots + s.prefetch - len(self._running) - len(self._unlaunched),
                    now,
                    s.lease_seconds,
                    execution_id=execution_id,
                    queues=None if execution_id is not None else s.queues,
                )
        with self._logs_lock:  # written: forget them (kept above if the commit failed)
            del self._logs[: len(logs)]
        self._handed = []
        return result, claims

    def _housekeeping(self, now: float, due: dict[str, float], execution_id: int | None) -> None:
        """Leases and the workers table (heartbeat), dead workers' attempts (reap), and
        other executions past their timeout, each when due."""
        s = self.settings
        if now >= due["heartbeat"]:
            leased = [*self._running, *(c.attempt_id for c in self._unlaunched)]
            self.store.heartbeat(s.worker_id, leased, now + s.lease_seconds)
            if execution_id is None:
                self.store.worker_heartbeat(s.worker_id, len(self._running), now)
                for expired in self.store.expired_executions(now):
                    self._stop(expired, "timeout", now, RecordResult())
            due["heartbeat"] = now + s.heartbeat_every
        if now >= due["reap"]:
            reaped = self.store.reap_expired(now, self.rng)
            if reaped.retries or reaped.ended_executions:
                logger.warning("reaped attempts of lost workers: %s", reaped)
            due["reap"] = now + s.reap_every

    def _recover(self, exc: StoreUnavailable, done: list[tuple[Claim, Outcome]]) -> None:
        """The database went away: wait with growing pauses until it answers again, then
        take up attempts leased to us whose claim committed although we never heard back
        (the connection died during COMMIT)."""
        pause = 0.1
        while True:
            logger.warning("store unavailable (%s); reconnecting in %.1fs", exc, pause)
            time.sleep(pause)
            try:
                self.store.reconnect()
                known = {*self._running, *(c.attempt_id for c in self._unlaunched)}
                known |= {c.attempt_id for c, _ in done} | {c.attempt_id for c in self._handed}
                orphans = [
                    c
                    for c in self.store.running_claims(self.settings.worker_id)
                    if c.attempt_id not in known
                ]
                if orphans:
                    logger.warning("taking up %d attempts claimed before the fault", len(orphans))
                    self._unlaunched.extend(orphans)
                return
            except StoreUnavailable as again:
                exc = again
                pause = min(pause * 2, 5.0)

    def _hand_back_after_grace(self, now: float) -> None:
        if self._stopping_at is None or now < self._stopping_at:
            return
        for running in self._running.values():
            if running.cancel_reason is None:
                running.cancel_reason = "handed back"
                running.context.cancel.set()

    def _launch_waiting(self) -> None:
        """Start claimed attempts while slots are free; on StoreUnavailable the rest
        waits for the reconnect."""
        while self._unlaunched and len(self._running) < self.settings.slots:
            self._launch(self._unlaunched[0])
            self._unlaunched.popleft()

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
        for claim in [c for c in self._unlaunched if c.execution_id == execution_id]:
            self._unlaunched.remove(claim)
            state = State.FAILED if reason == "timeout" else State.KILLED
            self._events.put(
                (
                    claim,
                    Outcome(
                        state, reason="timeout" if reason == "timeout" else "killed", error=message
                    ),
                )
            )

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

    def _wait(
        self, done: list[tuple[Claim, Outcome]], execution_id: int | None, due_at: float
    ) -> None:
        """Block until an outcome or a wake-up arrives or something is due; collect all
        outcomes that are there."""
        if done:
            return
        s = self.settings
        now = self.clock.now()
        due = [due_at]
        if self._running:
            due.append(now + s.log_flush_every)
        if self._stopping_at is not None:
            due.append(self._stopping_at)
        elif len(self._running) < s.slots and (self._delayed or execution_id is None):
            queues = None if execution_id is not None else s.queues
            next_ready = self.store.next_ready_time(now, execution_id=execution_id, queues=queues)
            if next_ready is not None:  # a retry waiting for its delay
                due.append(next_ready)
            self._delayed = next_ready is not None
            if execution_id is None or self._notified:
                due.append(now + (s.notified_poll_every if self._notified else s.poll_every))
        item = self.clock.wait(self._events, min(due) - now)
        while item is not None:
            self._collect(item, done)
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                item = None
        self._launch_waiting()  # freed slots start prefetched claims before we record

    def _collect(self, item: tuple[Claim, Outcome], done: list[tuple[Claim, Outcome]]) -> None:
        claim, outcome = item
        if claim is _WAKE:
            return
        running = self._running.pop(claim.attempt_id, None)
        if running is not None and running.cancel_reason == "handed back":
            self._handed.append(claim)
            return
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
_NEVER = float("inf")
_WAKE_OUTCOME = Outcome(State.FAILED)
