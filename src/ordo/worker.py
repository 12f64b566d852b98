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
from typing import Any, Protocol

from ordo import engine
from ordo.calls import Running, TaskCalls
from ordo.clock import Clock, SystemClock
from ordo.errors import OrdoError, StoreError, StoreUnavailable
from ordo.masking import LineMask, mask_value, masked, passed_environ, secret_values
from ordo.model import Outcome, State
from ordo.runners import RunnerSet
from ordo.runners.base import RunContext
from ordo.secrets import Revealed, SecretBox
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
    prefetch: int = 16  # claims beyond the free slots, started as soon as a slot frees
    record_delay: float = 0.05  # how long outcomes may wait to be recorded together
    kill_check_every: float = 0.5  # while attempts run: how often to look for kills
    grace: float = 30.0  # serve(): how long running attempts may finish after stop()
    reap_every: float = 15.0  # serve(): how often expired leases are looked for
    poll_every: float = 1.0  # serve() without notifications: how often to look for work
    notified_poll_every: float = 5.0  # with LISTEN/NOTIFY: a safety net only
    idle_poll_every: float = 0.2  # run_execution() with nothing running: look again
    # a task run waiting for its retry keeps its slot: nothing else takes it meanwhile
    # (``ordo executioner``: a job's retries belong to its run, also in sequential mode)
    retry_keeps_slot: bool = False
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )


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
        secrets: SecretBox | None = None,
    ) -> None:
        self.store = store
        self.runners = runners
        self.settings = settings or WorkerSettings()
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.env = passed_environ(os.environ if env is None else env)  # templates' env
        self.listener: Listener = listener or _Silent()
        # without a box: no secret can be read; the environment's secret-named values
        # (default names) are still masked
        self.secrets = secrets or SecretBox(
            None, secret_values(dict(os.environ if env is None else env))
        )
        self._events: queue.SimpleQueue[tuple[Claim, Outcome]] = queue.SimpleQueue()
        self._logs: list[NewLog] = []
        self._logs_lock = threading.Lock()
        self._running: dict[int, Running] = {}
        self._handed: list[Claim] = []
        self._unlaunched: collections.deque[Claim] = collections.deque()
        # more threads than slots: an attempt waiting for a child execution lends its slot
        self._pool = ThreadPoolExecutor(self.settings.slots + 64, thread_name_prefix="ordo-task")
        self._calls = TaskCalls(
            store,
            runners,
            self.clock,
            self.settings.worker_id,
            self._running,
            wake=lambda: self._events.put((_WAKE, _WAKE_OUTCOME)),
            evaluate=self._evaluate,
            start_flow_task=lambda claim, ctx: self._start_child(
                claim, ctx, _AttemptLog(self, claim)
            ),
        )
        self._stop_reason: str | None = None
        self._stopping_at: float | None = None
        self._notified = False
        self._deadline: float | None = None
        self._delayed = False  # a retry of ours may be waiting for its delay
        self._done_since = 0.0  # when the oldest outcome not yet recorded arrived
        self._kill_due = 0.0  # when to look again for executions being killed
        self._reap = False  # run_execution: reap expired leases too
        self._launched: list[int] = []  # attempts started since the last step
        self._retrying: set[int] = set()  # retry_keeps_slot: task runs holding a slot
        # executions with a failure not recorded yet: nothing more of them starts until
        # the store says whether they fail (a retry, allow_failure, continue_on_error)
        self._held: set[int] = set()
        self._vault: Revealed | None = None  # secrets read for this step's launches
        self._failed_now: set[int] = set()  # executions with a failure recorded this step

    # -- public --------------------------------------------------------------------
    def run_execution(self, execution_id: int, *, reap: bool = False) -> State:
        """Work on ``execution_id`` and its children only (any queue), until it ends,
        whoever ends it; returns its final state. Other workers may help. ``reap``: also
        take back attempts whose lease expired (resuming after a crash)."""
        self._reap = reap
        state = self._loop(execution_id)
        assert state is not None
        return state

    def serve(self) -> None:
        """Work on every execution's task runs of ``settings.queues`` until :meth:`stop`,
        registered in the workers table, reaping expired leases of dead workers."""
        s = self.settings
        now = self.clock.now()
        while True:
            try:
                self.store.register_worker(
                    s.worker_id, socket.gethostname(), os.getpid(), s.queues, now
                )
                break
            except StoreUnavailable as exc:
                self._recover(exc, [])
        logger.info("worker %s serving queues %s", s.worker_id, ",".join(s.queues))
        self.runners.warm_python()  # a long-running worker: its python hosts start now
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

    def wake(self) -> None:
        """Look for ready work now (another thread of this process made some)."""
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
            "reap": now if execution_id is None or self._reap else _NEVER,
        }
        deadline = None if execution_id is None else self.store.get_execution(execution_id).deadline
        self._deadline = deadline
        listening = self.store.listen(lambda: self._events.put((_WAKE, _WAKE_OUTCOME)))
        # in-process wake-ups (SQLite) do not hear other processes: keep polling
        self._notified = listening is not None and getattr(listening, "cross_process", True)
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
                for claim, outcome, retrying in result.nested:
                    self.listener.finished(claim, outcome, retrying)
                done = []
                try:
                    ended = self._after_step(now, due, execution_id, result, claims)
                    if ended is not None or (self._stopping_at is not None and not self._running):
                        return ended
                    wake_at = min([*due.values(), deadline or _NEVER])
                    self._wait(done, execution_id, wake_at)
                    while self._defer(done):  # gather a batch while prefetched work runs
                        self._wait(done, execution_id, wake_at)
                except StoreUnavailable as exc:
                    self._recover(exc, done)
        except BaseException:
            for item in done:  # not recorded: a loop started again (ordo server) records them
                self._events.put(item)
            raise
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
        carried = {c.execution_id for c in self._unlaunched}  # claimed in an earlier step
        self._unlaunched.extend(claims)  # first: leased to us, heartbeats must see them
        self._drop_failing(carried | {c.execution_id for c in claims} & self._failed_now)
        self._launch_waiting()
        self._calls.serve()
        self._calls.answer_waiters()
        self._housekeeping(now, due, execution_id)
        if self._running or self._unlaunched:
            self._check_kills(now)
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
        """One transaction: logs, stops asked for, claims, outcomes (with all they
        decide), hand-backs, and claims of what the outcomes just made ready."""
        for running in list(self._running.values()):
            if isinstance(running.context.log, _AttemptLog):
                running.context.log.release(now)  # lines held long enough for a secret's rest
        with self._logs_lock:
            logs = list(self._logs)
        stopped = RecordResult()
        launched = list(self._launched)
        ending = {c.attempt_id for c, _ in done}  # recorded now: no need to say launched
        with self.store.transaction():
            self.store.add_logs(logs)
            self.store.mark_launched([a for a in launched if a not in ending], now)
            if self._stop_reason is not None and execution_id is not None:
                self._stop(execution_id, self._stop_reason, now, stopped)
            if execution_id is not None and self._deadline is not None and now >= self._deadline:
                self._deadline = None
                self._stop(execution_id, "timeout", now, stopped)
            # serving, claim before recording: the rows every recording transaction
            # updates (the execution's counters) then stay locked as briefly as possible;
            # working on one execution, record first: what it makes ready is claimed next
            claims: list[Claim] = []
            if execution_id is None and not stopped.ended_executions:
                claims = self._claim(now, execution_id, 0)
            self.store.readied = execution_id is not None
            result = self.store.record_outcomes(done, now, self.rng)
            if self.settings.retry_keeps_slot:
                self._retrying.update(result.retries)
            result.ended_executions.update(stopped.ended_executions)
            result.nested.extend(stopped.nested)
            if self._stopping_at is not None and self._unlaunched:
                self._handed.extend(self._unlaunched)
                self._unlaunched.clear()
            if self._handed:
                self.store.hand_back(self._handed, now)
            if self.store.readied and execution_id not in result.ended_executions:
                claims += self._claim(now, execution_id, len(claims))  # made ready just now
        with self._logs_lock:  # written: forget them (kept above if the commit failed)
            del self._logs[: len(logs)]
        del self._launched[: len(launched)]
        self._handed = []
        self._held -= {c.execution_id for c, _ in done}
        self._failed_now = {c.execution_id for c, o in done if o.state is State.FAILED}
        self._vault = None  # read the secrets again for what launches after this step
        return result, claims

    def _claim(self, now: float, execution_id: int | None, taken: int) -> list[Claim]:
        """Claim up to the free slots (and ``prefetch`` more), less ``taken`` already."""
        s = self.settings
        if self._stopping_at is not None:
            return []
        room = s.slots + s.prefetch - self._busy() - len(self._unlaunched) - taken
        queues = None if execution_id is not None else s.queues
        claims: list[Claim] = []
        if self._retrying:  # their slots are kept: they come first, nothing takes them
            claims = self.store.claim(
                s.worker_id,
                room,
                now,
                s.lease_seconds,
                execution_id=execution_id,
                queues=queues,
                only=sorted(self._retrying),
            )
            self._retrying.difference_update(c.task_run_id for c in claims)
            room -= len(claims) + len(self._retrying)
        return claims + self.store.claim(
            s.worker_id, room, now, s.lease_seconds, execution_id=execution_id, queues=queues
        )

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

    def _busy(self) -> int:
        """Slots in use: running attempts, less those waiting for a child execution."""
        return sum(1 for r in self._running.values() if not r.waiting)

    def _launch_waiting(self) -> None:
        """Start claimed attempts while slots are free; on StoreUnavailable the rest
        waits for the reconnect."""
        while self._busy() < self.settings.slots:
            claim = next((c for c in self._unlaunched if c.execution_id not in self._held), None)
            if claim is None:
                return
            self._launch(claim)
            self._unlaunched.remove(claim)

    def _stop(self, execution_id: int, reason: str, now: float, result: RecordResult) -> None:
        """Fail an execution: its unstarted task runs end SKIPPED, running attempts here
        are stopped and end FAILED with the same reason."""
        self._stop_reason = None
        message = "execution timed out" if reason == "timeout" else reason
        sub = self.store.fail_execution(execution_id, message, now)
        result.ended_executions.update(sub.ended_executions)
        result.nested.extend(sub.nested)
        self._cancel(sub.stopped | {execution_id}, reason, message)

    def _cancel(self, executions: set[int], reason: str, message: str) -> None:
        """Stop this worker's attempts of these executions (``reason``: ``timeout``,
        ``killed`` or why it was interrupted); claims not started end at once."""
        for running in self._running.values():
            if running.claim.execution_id in executions and running.cancel_reason is None:
                running.cancel_reason = reason
                running.context.cancel.set()
        timeout = reason == "timeout"
        outcome = Outcome(
            State.FAILED if timeout else State.KILLED,
            reason="timeout" if timeout else "killed",
            error=message,
        )
        for claim in [c for c in self._unlaunched if c.execution_id in executions]:
            self._unlaunched.remove(claim)
            self._events.put((claim, outcome))

    def _drop_failing(self, ids: set[int]) -> None:
        """Claims not launched yet of executions that are failing end SKIPPED, the
        failure as their reason: once a task has failed, nothing new of it starts.
        ``ids``: the executions to ask the store about, those of claims taken in an
        earlier step (another process may have recorded a failure since) and those a
        failure of which this step recorded after claiming; a claim taken after the
        failure was recorded cannot be of a failing execution (the failure took its
        ready rows)."""
        if not ids:
            return
        failing = self.store.failing_among(ids)
        for claim in [c for c in self._unlaunched if c.execution_id in failing]:
            self._unlaunched.remove(claim)
            why = failing[claim.execution_id]
            self._events.put((claim, Outcome(State.SKIPPED, reason="failing", error=why)))

    def _check_kills(self, now: float) -> None:
        """Stop attempts whose execution is being killed (``ordo kill``, any process),
        looked for every ``kill_check_every`` seconds while attempts run here."""
        if now < self._kill_due:
            return
        self._kill_due = now + self.settings.kill_check_every
        ids = {r.claim.execution_id for r in self._running.values()}
        ids |= {c.execution_id for c in self._unlaunched}
        killing = self.store.killing_among(ids)
        if killing:
            logger.info("killing the attempts of executions %s", sorted(killing))
            self._cancel(killing, "killed", "killed on request")

    def _launch(self, claim: Claim) -> None:
        self._launched.append(claim.attempt_id)
        log = _AttemptLog(self, claim)
        if self._vault is None:  # the store's secrets, read once per step
            self._vault = self.secrets.reveal(self.store.secret_rows())
        try:
            prepared = engine.prepare(self.store, claim, log, self.env, self.secrets, self._vault)
        except StoreError:
            raise
        except Exception as exc:  # a bug on user content must not stop the loop
            logger.exception("preparing task %r failed", claim.task_id)
            error = f"task '{claim.task_id}': cannot prepare: {type(exc).__name__}"
            failed = Outcome(State.FAILED, reason="error", error=error)
            prepared = engine.Prepared(claim, outcome=failed)
        self.listener.started(claim)
        if prepared.outcome is not None:
            outcome = prepared.outcome
            if outcome.forks is not None:
                log("stdout", f"for_each: {len(outcome.forks)} items")
            elif outcome.state is State.SKIPPED:
                log("stdout", f"skipped: {outcome.error}")
            elif outcome.error:
                log("stderr", outcome.error)
            self._events.put((claim, prepared.outcome))
            return
        ctx = prepared.context
        assert ctx is not None
        log.hide(ctx.secrets)
        if ctx.task.type == "flow" and ctx.run_if is None:
            self._start_child(claim, ctx, log)
            return
        ctx.kill_grace = self.settings.kill_grace
        ctx.call = lambda request: self._calls.call(claim, request)
        self._running[claim.attempt_id] = Running(claim, ctx)
        self._pool.submit(self._run, claim, ctx)

    def _start_flow_task(self, claim: Claim, ctx: RunContext) -> None:
        self._start_child(claim, ctx, _AttemptLog(self, claim))

    def _start_child(self, claim: Claim, ctx: RunContext, log: _AttemptLog) -> None:
        """A flow task: start its child execution here. Waiting, the attempt is ended by
        the store when the child ends; else at once, with the child's id."""
        wait = bool(ctx.fields.get("wait", True))
        revision = ctx.fields.get("revision")
        try:
            child = engine.start_child(
                self.store,
                claim,
                str(ctx.fields["flow"]),
                mask_value(dict(ctx.with_), ctx.secrets),  # stored as the child's inputs
                self.clock.now(),
                revision=int(revision) if revision is not None else None,
                wait=wait,
                evaluate=self._evaluate,
            )
        except StoreUnavailable:
            raise
        except OrdoError as exc:
            message = f"task '{claim.task_id}': {exc}"
            log("stderr", message)
            self._events.put((claim, Outcome(State.FAILED, reason="child", error=message)))
            return
        log("stdout", f"started child execution {child}" + (" and waits for it" if wait else ""))
        if wait:
            self._events.put((_WAKE, _WAKE_OUTCOME))  # its tasks may be ours to run
        else:
            self._events.put((claim, Outcome(State.SUCCESS, outputs={"execution_id": child})))

    def _evaluate(self, function: str, base_dir: str, facts: Mapping[str, Any]) -> Any:
        """A flow's run_if function, on one of this worker's python hosts."""
        return self._python().evaluate(function, base_dir, facts)

    def _python(self) -> Any:
        return self.runners.get("python")

    def _run(self, claim: Claim, ctx: RunContext) -> None:
        try:
            outcome = self._evaluate_run_if(ctx)
            if outcome is None and ctx.task.type == "flow":
                ctx.run_if = None  # answered RUN: the loop starts the child
                self._calls.call(claim, {"op": "start_flow_task", "context": ctx})
                return
            if outcome is None:
                runner = self.runners.get(ctx.task.type)
                if ctx.checks is None:
                    outcome = runner.run(ctx)
                else:  # pre checks, the task, post checks
                    outcome = self.runners.checks().around(
                        ctx, lambda: runner.run(ctx), self.clock.now
                    )
        except Exception as exc:  # a runner bug must not lose the attempt
            logger.exception("runner %s crashed", ctx.task.type)
            outcome = Outcome(State.FAILED, reason="error", error=f"internal error: {exc!r}")
        if isinstance(ctx.log, _AttemptLog):
            ctx.log.release(None)  # every line has come: the held ones go now
        self._events.put((claim, masked(outcome, ctx.secrets)))

    def _evaluate_run_if(self, ctx: RunContext) -> Outcome | None:
        """A function run_if, evaluated on a python host: None to run the task."""
        if ctx.run_if is None:
            return None
        function = str(ctx.run_if["function"])
        try:
            value = self._python().evaluate(function, ctx.base_dir, ctx.facts, ctx)
        except OrdoError as exc:
            if ctx.cancel.is_set():
                return Outcome(State.KILLED, reason="killed", error="killed on request")
            return Outcome(State.FAILED, reason="run_if", error=f"task '{ctx.task.id}': {exc}")
        return engine.decide_run_if(ctx.task, value)

    def _wait(
        self, done: list[tuple[Claim, Outcome]], execution_id: int | None, due_at: float
    ) -> None:
        """Block until an outcome or a wake-up arrives or something is due; collect all
        outcomes that are there."""
        if done and not self._defer(done):
            return
        s = self.settings
        now = self.clock.now()
        due = [due_at]
        if done:
            due.append(self._done_since + s.record_delay)
        if self._running:
            due.append(now + s.log_flush_every)
            due.append(self._kill_due)
        if self._calls.waiting:  # children may be ended by other workers
            due.append(now + 0.2)
        if execution_id is not None and not self._running and not self._unlaunched:
            # nothing of ours runs: the execution waits for a concurrency limit, or for
            # work other processes do (its children, a key's slot)
            due.append(now + s.idle_poll_every)
        if self._stopping_at is not None:
            due.append(self._stopping_at)
        elif self._busy() < s.slots and (self._delayed or execution_id is None):
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

    def _defer(self, done: list[tuple[Claim, Outcome]]) -> bool:
        """Whether to wait for more outcomes before recording: while enough prefetched
        claims wait to keep the slots busy through a step (so nothing waits for this
        record), up to ``prefetch`` outcomes or ``record_delay`` seconds, so that one
        transaction records many."""
        s = self.settings
        if not done or len(self._unlaunched) < s.slots or len(done) >= max(s.prefetch, 1):
            return False  # record now: claims must come before the slots run dry
        if self._stopping_at is not None or self._stop_reason is not None or self._held:
            return False  # a failure is recorded at once: it may stop what waits
        return self.clock.now() < self._done_since + s.record_delay

    def _collect(self, item: tuple[Claim, Outcome], done: list[tuple[Claim, Outcome]]) -> None:
        claim, outcome = item
        if claim is _WAKE:
            return
        if not done:
            self._done_since = self.clock.now()
        if outcome.state is State.FAILED:
            self._held.add(claim.execution_id)
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
                checks=outcome.checks,
            )
        done.append((claim, outcome))


class _AttemptLog:
    """The log sink of one attempt: timestamps lines, buffers them for the loop (waking it
    when many wait), masks secrets (:meth:`hide`; a line that may go on with a secret's
    rest is held back up to :data:`HOLD` seconds) and stops keeping output past
    ``max_log_bytes`` with one marker. Fed by the attempt's threads, released by the
    loop."""

    HOLD = 1.0

    def __init__(self, worker: Worker, claim: Claim) -> None:
        self.worker = worker
        self.claim = claim
        self.size = 0
        self.truncated = False
        self.dropped_bytes = 0  # read after the cap and not kept
        self.dropped_lines = 0
        self._secrets: tuple[str, ...] = ()
        self._masks: dict[str, LineMask] = {}
        self._held_since: float | None = None
        self._lock = threading.Lock()

    def hide(self, secrets: tuple[str, ...]) -> None:
        """Mask ``secrets`` in the lines from now on."""
        with self._lock:
            self._secrets = secrets
            self._masks = {}

    def __call__(self, stream: str, line: str) -> None:
        if not self._secrets:
            self._emit(stream, line)
            return
        with self._lock:
            masks = self._masks.get(stream)
            if masks is None:
                masks = self._masks[stream] = LineMask(self._secrets)
            for shown in masks.feed(line):
                self._emit(stream, shown)
            if not any(m.holding for m in self._masks.values()):
                self._held_since = None
            elif self._held_since is None:
                self._held_since = self.worker.clock.now()

    @property
    def full(self) -> bool:
        """Past the cap: readers drain the rest in blocks (:meth:`dropped`)."""
        return self.truncated

    def dropped(self, size: int, lines: int) -> None:
        with self._lock:
            self.dropped_bytes += size
            self.dropped_lines += lines

    def release(self, now: float | None) -> None:
        """Let the held lines go: all of them (``now`` None: every line has come, and
        what was dropped past the cap is counted in a last line), else those held for
        :data:`HOLD` seconds by ``now``."""
        with self._lock:
            since = self._held_since
            if since is not None and (now is None or now - since >= self.HOLD):
                for stream, masks in self._masks.items():
                    for shown in masks.flush():
                        self._emit(stream, shown)
                self._held_since = None
            if now is None and self.dropped_bytes:
                size, lines = self.dropped_bytes, self.dropped_lines
                self.dropped_bytes = self.dropped_lines = 0
                self._append(
                    "stderr",
                    f"[ordo: {size} more bytes ({lines} lines) of output after the cap "
                    "were dropped]",
                )

    def _emit(self, stream: str, line: str) -> None:
        worker = self.worker
        limit = worker.settings.max_log_bytes
        if self.truncated:
            self.dropped_bytes += len(line) + 1
            self.dropped_lines += 1
            return
        self.size += len(line) + 1
        if self.size > limit:
            self.truncated = True
            self.dropped_bytes, self.dropped_lines = len(line) + 1, 1
            stream = "stderr"
            line = f"[ordo: output truncated after {limit} bytes; the rest was not kept]"
        self._append(stream, line)

    def _append(self, stream: str, line: str) -> None:
        worker = self.worker
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
