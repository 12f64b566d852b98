"""Launching: the claims waiting for a slot, the attempts running on the worker's threads,
and how a claim becomes a running attempt (prepared, then run by its runner, or a flow
task's child execution started). Every end is told to the loop as a :class:`Reported`."""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ordo import engine
from ordo.clock import Clock
from ordo.errors import OrdoError, StoreError, StoreUnavailable
from ordo.masking import mask_value, masked
from ordo.model import DROPPED, Outcome, State, Task
from ordo.runners import RunnerSet
from ordo.runners.base import LogSink, RunContext, crashed
from ordo.runners.process import AttemptFiles
from ordo.runners.python import HostRun, reply_outcome
from ordo.secrets import Revealed, SecretBox
from ordo.store import Store
from ordo.store.records import AttemptProcess, Claim
from ordo.worker.calls import Here, Running, TaskCalls
from ordo.worker.events import Inbox, ProcessStarted, Unstarted
from ordo.worker.hosts import HostDriver
from ordo.worker.logs import AttemptLog, LogBuffer
from ordo.worker.settings import Listener, WorkerSettings

if TYPE_CHECKING:
    from ordo.worker.requests import Request

logger = logging.getLogger(__name__)


class Launcher:
    """Claims waiting for a slot (``waiting``, each leased until ``leased_until``) and
    attempts running (``running``). Loop thread only, except :meth:`_run`."""

    def __init__(
        self,
        store: Store,
        runners: RunnerSet,
        settings: WorkerSettings,
        clock: Clock,
        inbox: Inbox,
        logs: LogBuffer,
        listener: Listener,
        env: Mapping[str, str],
        secrets: SecretBox,
    ) -> None:
        self.store = store
        self.runners = runners
        self.settings = settings
        self.clock = clock
        self.inbox = inbox
        self.logs = logs
        self.listener = listener
        self.env = env
        self.secrets = secrets
        self.running: dict[int, Running] = {}
        self.waiting: collections.deque[Claim] = collections.deque()
        self.leased_until: dict[int, float] = {}  # waiting claims' leases, by attempt
        # executions with a failure not recorded yet: nothing more of them starts until
        # the store says whether they fail (a retry, allow_failure, continue_on_error)
        self.held: set[int] = set()
        #: attempts a host never started, back among the waiting claims: they start
        #: again once the next step has asked whether their execution is failing
        self.unchecked: set[int] = set()
        #: of those, the ones waiting (launched already: leased as running attempts are,
        #: renewed by the heartbeat, not as claims)
        self.relaunch: set[int] = set()
        self.announced: set[int] = set()  # of those, the ones the listener heard start
        self._front = 0  # those put back since the last step: first in line, in order
        self.launched: list[int] = []  # attempts started since the last step
        self.late: list[Claim] = []  # claims not started in time: handed back next step
        self.processes: list[AttemptProcess] = []  # process groups they started
        self.vault: Revealed | None = None  # secrets read for this step's launches
        # more threads than slots: an attempt waiting for a child execution lends its slot
        self._pool = ThreadPoolExecutor(settings.slots + 64, thread_name_prefix="ordo-task")
        self.hosts = HostDriver(  # plain python tasks
            runners,
            inbox,
            self._pool,
            self._end,
            lambda running: inbox.put(Unstarted(running.claim)),
            clock.now,
            settings.host_queue,
            settings.host_queue_below,
        )
        self.calls = TaskCalls(
            store,
            runners,
            clock,
            settings.worker_id,
            wake=lambda: inbox.wake("call"),
            evaluate=self.evaluate,
            start_flow_task=self._start_flow_task,
            here=self,
            told=lambda: inbox.wake("told"),
        )

    # -- claims waiting for a slot ----------------------------------------------------
    def take(self, claims: list[Claim], now: float, starting: Collection[int] = ()) -> None:
        """Claims just taken, leased for ``claim_lease_seconds`` from ``now``; those
        ``starting`` (marked launched as they were claimed) for the full lease."""
        s = self.settings
        self.waiting.extend(claims)
        for claim in claims:
            lease = s.lease_seconds if claim.attempt_id in starting else s.claim_lease_seconds
            self.leased_until[claim.attempt_id] = now + lease

    def renewals(self, now: float) -> list[int]:
        """Waiting claims whose lease is a third gone: renew them in this step. Those
        with less than half of it left are given up instead (see :meth:`_too_late`):
        a lease is never renewed once another worker may be taking it back."""
        for claim in [c for c in self.waiting if self._too_late(c, now)]:
            self.unwait(claim)
        due = now + self.settings.claim_lease_seconds * 2 / 3
        return [
            c.attempt_id
            for c in self.waiting
            if self.leased_until[c.attempt_id] < due and c.attempt_id not in self.relaunch
        ]

    def _too_late(self, claim: Claim, now: float) -> bool:
        """Whether less than half of ``claim``'s lease is left (the loop was held up):
        then it is neither started nor renewed but handed back in the next step."""
        if self.leased_until[claim.attempt_id] - now >= self.settings.claim_lease_seconds / 2:
            return False
        logger.warning(
            "not starting attempt %d of task %r: its claim was not renewed in time (handed back)",
            claim.attempt_id,
            claim.task_id,
        )
        self.late.append(claim)
        self.announced.discard(claim.attempt_id)  # (handed back: never started again)
        return True

    def renewed(self, attempt_ids: list[int], until: float) -> None:
        for attempt_id in attempt_ids:
            if attempt_id in self.leased_until:
                self.leased_until[attempt_id] = until

    def next_renewal(self) -> float | None:
        if not self.waiting:
            return None
        soonest = min(self.leased_until[c.attempt_id] for c in self.waiting)
        return soonest - self.settings.claim_lease_seconds * 2 / 3

    def starting(self, claims: list[Claim]) -> list[int]:
        """Of ``claims`` (just taken, not waiting yet), those that will launch at once
        (slots free for them): marked launched in the step that claims them."""
        ready = [c.attempt_id for c in claims if c.execution_id not in self.held]
        return ready[: self.room()]

    def room(self) -> int:
        """How many claims taken now would launch at once: the free slots, less the
        claims waiting for one."""
        free = self.settings.slots - self.busy()
        free -= sum(1 for c in self.waiting if c.execution_id not in self.held)
        return max(free, 0)

    def unwait(self, claim: Claim) -> None:
        self.waiting.remove(claim)
        self.leased_until.pop(claim.attempt_id, None)
        self.relaunch.discard(claim.attempt_id)

    def recorded(self, launched: int, processes: int) -> None:
        """The first ``launched`` attempts and ``processes`` groups are in the store; the
        secrets are read again for what launches after this step."""
        del self.launched[:launched]
        del self.processes[:processes]
        self.vault = None

    def busy(self) -> int:
        """Slots in use: running attempts, less those waiting for a child execution and
        those queued on a python host (not started yet)."""
        return sum(1 for r in self.running.values() if not r.waiting and not r.queued)

    def queued(self) -> int:
        """Claims taken ahead: waiting for a slot, or queued on a python host."""
        return len(self.waiting) + sum(1 for r in self.running.values() if r.queued)

    def launch_waiting(self) -> None:
        """Start waiting claims while slots are free; then queue the next ones, when
        they are quick plain python tasks, on busy python hosts (:meth:`HostDriver.behind`). A claim
        whose short lease is half gone (the loop was held up) is not started but handed
        back in the next step: another worker may take it back any time now."""
        while self.busy() < self.settings.slots:
            claim = self._next_waiting()
            if claim is None:
                return
            late = self._too_late(claim, self.clock.now())
            self.unwait(claim)
            if not late:
                self.launch(claim)
        while self.hosts.queue:
            claim = self._next_waiting()
            if claim is None:
                return
            task = self.store.flow_of(claim.revision_id).task(claim.task_id)
            behind = self.hosts.behind(claim.execution_id, task)
            if behind is None:
                return
            late = self._too_late(claim, self.clock.now())
            self.unwait(claim)
            if not late:
                self.launch(claim, behind)

    def _next_waiting(self) -> Claim | None:
        """The first waiting claim that may start now."""
        held, unchecked = self.held, self.unchecked
        return next(
            (
                c
                for c in self.waiting
                if c.execution_id not in held and c.attempt_id not in unchecked
            ),
            None,
        )

    def put_back(self, claim: Claim) -> None:
        """An attempt queued on a host that never started it waits for a slot again,
        first in line (it is launched: its lease is renewed by the heartbeat, with the
        running ones), once the next step has seen that its execution is not failing
        (:meth:`drop_failing`: the host did not run it because the task before it
        failed)."""
        running = self.running.pop(claim.attempt_id, None)
        if running is not None and isinstance(running.context.log, AttemptLog):
            running.context.log.release(None)
        s = self.settings
        self.waiting.insert(self._front, claim)  # (after those put back before it)
        self._front += 1
        self.unchecked.add(claim.attempt_id)
        self.relaunch.add(claim.attempt_id)
        self.announced.add(claim.attempt_id)
        # (its lease in the store: from the last heartbeat, at most heartbeat_every ago)
        self.leased_until[claim.attempt_id] = self.clock.now() + s.lease_seconds - s.heartbeat_every

    def end_waiting(self, executions: set[int], outcome: Outcome) -> None:
        """Waiting claims of ``executions`` end at once with ``outcome``."""
        for claim in [c for c in self.waiting if c.execution_id in executions]:
            self.unwait(claim)
            self.inbox.finished(claim, outcome)

    def hand_back_waiting(self) -> list[Claim]:
        """Every waiting claim, given up (a stopping worker)."""
        claims = list(self.waiting)
        self.waiting.clear()
        self.leased_until.clear()
        self.relaunch.clear()
        self.announced.clear()
        return claims

    # -- launching -----------------------------------------------------------------------
    def launch(self, claim: Claim, behind: HostRun | None = None) -> None:
        """Prepare and start the attempt (queued ``behind`` that one on its host, when
        given: it is of a plain python task, see :meth:`HostDriver.behind`)."""
        self.launched.append(claim.attempt_id)
        log = self._log(claim)
        if self.vault is None:  # the store's secrets, read once per step
            self.vault = self.secrets.reveal(self.store.secret_rows())
        try:
            step = self.calls.started.pop(claim.task_run_id, None)  # a @task's, begun here
            prepared = engine.prepare(
                self.store, claim, log, self.env, self.secrets, self.vault, step
            )
        except StoreError:
            raise
        except Exception as exc:  # a bug on user content must not stop the loop
            logger.exception("preparing task %r failed", claim.task_id)
            error = f"task '{claim.task_id}': cannot prepare: {type(exc).__name__}"
            failed = Outcome(State.FAILED, reason="error", error=error)
            prepared = engine.Prepared(claim, outcome=failed)
        if claim.attempt_id in self.announced:  # (put back: it heard it start already)
            self.announced.discard(claim.attempt_id)
        else:
            self.listener.started(claim)
        if prepared.outcome is not None:
            outcome = prepared.outcome
            if outcome.forks is not None:
                log("stdout", f"for_each: {len(outcome.forks)} items")
            elif outcome.state is State.SKIPPED:
                log("stdout", f"skipped: {outcome.error}")
            elif outcome.error:
                log("stderr", outcome.error)
            self.inbox.finished(claim, outcome)
            return
        ctx = prepared.context
        assert ctx is not None
        log.hide(ctx.secrets)
        if ctx.task.type == "flow" and ctx.run_if is None:
            self.start_child(claim, ctx, log)
            return
        ctx.kill_grace = self.settings.kill_grace
        running = Running(claim, ctx, since=self.clock.now())
        ctx.call = lambda request: self.calls.call(running, request)
        if ctx.fields.get("flow_function"):  # the lines of the @tasks it runs in its host
            ctx.step_log = lambda attempt: _here_log(running, attempt)
        ctx.process_started = lambda pid, started: self.inbox.note(  # in the next step
            ProcessStarted(claim.attempt_id, pid, started)
        )
        self.running[claim.attempt_id] = running
        if self.hosts.takes(running):
            self.hosts.start(running, behind)  # the loop reads its host
        else:
            self._pool.submit(self._run, running)

    # -- a flow function's @task calls, run in its own host ----------------------------
    def may_run(self, caller: Claim, task: Task) -> bool:
        """A ``@task`` call runs in its flow function's host unless its task has a
        timeout (which only stopping a host of its own enforces) or a queue other than
        the flow function's (it must run on a worker of that queue)."""
        if task.timeout is not None:
            return False
        return task.queue == self.store.flow_of(caller.revision_id).task(caller.task_id).queue

    def claim(self, run_id: int, now: float) -> Claim | None:
        s = self.settings
        taken = self.store.claim(s.worker_id, 1, now, s.claim_lease_seconds, only=[run_id])
        if not taken:
            return None
        self.store.mark_launched([taken[0].attempt_id], now, now + s.lease_seconds)
        return taken[0]

    def start(self, caller: Running, claim: Claim, request: Request) -> dict[str, Any]:
        """The step's attempt as running here, in the caller's slot (its host runs it):
        renewed, stopped and reported as any other; what the host needs to run it."""
        from ordo.worker.requests import TaskStep  # (loaded: a task called)

        assert isinstance(request, TaskStep)
        flow = caller.context
        log = self._log(claim)
        log.hide(flow.secrets)
        task = self.store.flow_of(claim.revision_id).task(claim.task_id)
        ctx = RunContext(
            claim.execution_id,
            claim.task_run_id,
            claim.attempt_id,
            claim.number,
            task,
            {**task.spec, "args": list(request.args)},
            dict(request.kwargs),
            dict(task.env),
            flow.base_dir,
            log,
            kill_grace=self.settings.kill_grace,
            secrets=flow.secrets,
            vault=flow.vault,
        )
        running = Running(claim, ctx, waiting=1, since=self.clock.now())  # the caller's slot
        ctx.call = lambda call: self.calls.call(running, call)
        files = AttemptFiles(claim.attempt_id)
        self.running[claim.attempt_id] = running
        caller.here[claim.attempt_id] = Here(running, files)
        caller.logs[claim.attempt_id] = log
        self.listener.started(claim)
        if caller.ended:  # the flow function's attempt ended meanwhile: so does this
            self._end_with(caller, claim.attempt_id)
        env = {**files.env(ctx), "ORDO_INPUTS": json.dumps(dict(ctx.with_))}
        return {"run": claim.task_run_id, "attempt": claim.attempt_id, "env": env}

    def end(self, here: Here, reply: Mapping[str, Any]) -> None:
        ctx = here.running.context
        try:
            outcome = reply_outcome(dict(reply), here.files)
        except Exception as exc:  # a malformed reply must not lose the attempt
            logger.exception("the reply of task %r cannot be read", ctx.task.id)
            outcome = crashed(exc)
        finally:
            here.files.remove()
        self.calls.report(here.running.claim, masked(outcome, ctx.secrets))

    def _end_all_here(self, caller: Running) -> None:
        """The flow function's attempt ended (its runner returned): ``@task`` attempts
        still running in its host (it was stopped, or died) end with it."""
        caller.ended = True  # (first: one started from now on is ended by ``start``)
        for attempt_id in list(caller.here):
            self._end_with(caller, attempt_id)

    def _end_with(self, caller: Running, attempt_id: int) -> None:
        here = caller.here.pop(attempt_id, None)
        if here is not None:  # (not ended by another thread)
            here.files.remove()
            if caller.context.cancel.is_set():
                outcome = Outcome(State.KILLED, reason="killed", error="killed on request")
            else:
                error = "the python process of its flow function ended while it ran there"
                outcome = Outcome(State.FAILED, reason="error", error=error)
            if isinstance(here.running.context.log, AttemptLog):
                here.running.context.log.release(None)
            self.calls.report(here.running.claim, outcome)

    def _log(self, claim: Claim) -> AttemptLog:
        return AttemptLog(claim, self.logs, self.clock, self.settings.max_log_bytes)

    def _start_flow_task(self, running: Running, ctx: RunContext) -> None:
        """A flow task whose run_if answered RUN: its child starts now (loop thread)."""
        self.running.pop(running.claim.attempt_id, None)
        self.start_child(running.claim, ctx, self._log(running.claim))

    def start_child(self, claim: Claim, ctx: RunContext, log: AttemptLog) -> None:
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
                evaluate=self.evaluate,
            )
        except StoreUnavailable:
            raise
        except OrdoError as exc:
            message = f"task '{claim.task_id}': {exc}"
            log("stderr", message)
            self.inbox.finished(claim, Outcome(State.FAILED, reason="child", error=message))
            return
        log("stdout", f"started child execution {child}" + (" and waits for it" if wait else ""))
        if wait:
            self.inbox.wake("child started")  # its tasks may be ours to run
        else:
            self.inbox.finished(claim, Outcome(State.SUCCESS, outputs={"execution_id": child}))

    def evaluate(self, function: str, base_dir: str, facts: Mapping[str, Any]) -> Any:
        """A flow's run_if function, on one of this worker's python hosts."""
        return self._python().evaluate(function, base_dir, facts)

    def _python(self) -> Any:
        return self.runners.get("python")

    # -- on the attempt's thread -----------------------------------------------------------
    def _run(self, running: Running) -> None:
        ctx = running.context
        try:
            outcome = self._evaluate_run_if(ctx)
            if outcome is None and ctx.task.type == "flow":
                ctx.run_if = None  # answered RUN: the loop starts the child
                from ordo.worker.requests import StartFlowTask

                self.calls.ask(running, StartFlowTask(ctx))
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
            outcome = crashed(exc)
        self._end(running, outcome)

    def _end(self, running: Running, outcome: Outcome) -> None:
        """The attempt's runner returned ``outcome`` (on its thread, or on the loop's
        for one the loop drives): told to the loop."""
        ctx = running.context
        self._end_all_here(running)
        if isinstance(ctx.log, AttemptLog):
            ctx.log.release(None)  # every line has come: the held ones go now
        self.inbox.finished(running.claim, masked(outcome, ctx.secrets))

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

    # -- stopping ------------------------------------------------------------------------
    def cancel(self, executions: set[int], reason: str, message: str) -> None:
        """Stop this worker's attempts of these executions (``reason``: ``timeout``,
        ``killed`` or why it was interrupted); claims not started end at once."""
        for running in self.running.values():
            if running.claim.execution_id in executions and running.cancel_reason is None:
                running.cancel_reason = reason
                running.context.cancel.set()
        timeout = reason == "timeout"
        outcome = Outcome(
            State.FAILED if timeout else State.KILLED,
            reason="timeout" if timeout else "killed",
            error=message,
        )
        self.end_waiting(executions, outcome)

    def drop_failing(self, ids: set[int]) -> None:
        """Waiting claims of executions that are failing end SKIPPED, the failure as
        their reason: once a task has failed, nothing new of it starts. ``ids``: the
        executions to ask the store about, those of claims taken in an earlier step
        (another process may have recorded a failure since) and those a failure of which
        this step recorded after claiming; a claim taken after the failure was recorded
        cannot be of a failing execution (the failure took its ready rows). Attempts
        queued on python hosts of an execution failing (another worker may have
        recorded it) are withdrawn (:meth:`HostDriver.withdraw`)."""
        self.unchecked.clear()  # (their executions are among ``ids``: they waited)
        self._front = 0
        queued = {r.claim.execution_id for r in self.running.values() if r.queued}
        if not ids and not queued:
            return
        failing = self.store.failing_among(ids | queued)
        for execution_id in queued & failing.keys():
            self.hosts.withdraw(execution_id)
        for claim in [c for c in self.waiting if c.execution_id in failing]:
            self.unwait(claim)
            why = failing[claim.execution_id]
            self.inbox.finished(claim, Outcome(State.SKIPPED, reason=DROPPED, error=why))

    def release_logs(self, now: float) -> None:
        """Lines held long enough for a secret's rest go to the buffer."""
        for running in list(self.running.values()):
            if isinstance(running.context.log, AttemptLog):
                running.context.log.release(now)

    def close(self) -> None:
        for running in self.running.values():
            running.context.cancel.set()
        self.hosts.release()  # (cancelled: their threads stop them)
        self._pool.shutdown(wait=True)


def _here_log(caller: Running, attempt_id: int) -> LogSink | None:
    """The log of the ``@task`` attempt ``attempt_id`` run in ``caller``'s host, asked
    once, when its first line comes."""
    return caller.logs.pop(attempt_id, None)
