"""The worker's loop: claim -> launch -> collect -> record.

One loop thread owns the store connection. Each step is one short write transaction that
stores buffered log lines, records every outcome that came in (which also makes
dependents ready or schedules retries), stops executions past their timeout, and claims
as many ready task runs as there are free slots (and :meth:`Worker.ahead` more). Between
steps the loop launches what was claimed (:mod:`.launch`), does what is due
(:mod:`.housekeeping`), answers handlers' calls (:mod:`.calls`) and waits for events
(:mod:`.events`): attempts' outcomes from the runner threads, wake-ups, process groups
started.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping

from ordo.clock import Clock, SystemClock
from ordo.errors import IllegalTransition, StoreError, StoreUnavailable
from ordo.masking import passed_environ, secret_values
from ordo.model import Outcome, State
from ordo.runners import RunnerSet
from ordo.runners.process import this_machine
from ordo.secrets import SecretBox
from ordo.store import Store
from ordo.store.records import AttemptProcess, Claim, NewLog, RecordResult
from ordo.worker.events import Event, Inbox, ProcessStarted, Reported, Unstarted, Wake
from ordo.worker.housekeeping import NEVER, Housekeeping
from ordo.worker.launch import Launcher
from ordo.worker.logs import LogBuffer
from ordo.worker.settings import Listener, Silent, WorkerSettings

logger = logging.getLogger(__name__)


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
        store.plan_once()  # its statements are lookups by key, run again and again
        self.runners = runners
        self.settings = s = settings or WorkerSettings()
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.listener: Listener = listener or Silent()
        environ = os.environ if env is None else env
        # without a box: no secret can be read; the environment's secret-named values
        # (default names) are still masked
        box = secrets or SecretBox(None, secret_values(dict(environ)))
        self.inbox = Inbox(self.clock)
        self.logs = LogBuffer(s.log_batch_lines, lambda: self.inbox.wake("logs"))
        self.launcher = Launcher(
            store,
            runners,
            s,
            self.clock,
            self.inbox,
            self.logs,
            self.listener,
            passed_environ(environ),  # templates' env
            box,
        )
        self.housekeeping = Housekeeping(store, s, self.clock, self.rng, self.launcher)
        self._handed: list[Claim] = []  # to hand back in the next step
        self._retrying: set[int] = set()  # retry_keeps_slot: task runs holding a slot
        self._failed_now: set[int] = set()  # executions with a failure recorded this step
        self._notified = False
        self._deadline: float | None = None
        self._delayed = False  # a retry of ours may be waiting for its delay
        self._done_since = 0.0  # when the oldest outcome not yet recorded arrived
        self._reap = False  # run_execution: reap expired leases too
        self._typical: float | None = None  # how long attempts ran, lately (seconds)

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
                    s.worker_id, os.uname().nodename, os.getpid(), s.queues, now
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
        if self.housekeeping.stopping_at is None:
            self.housekeeping.stopping_at = self.clock.now() + self.settings.grace
        self.inbox.wake("stop")

    def wake(self) -> None:
        """Look for ready work now (another thread of this process made some)."""
        self.inbox.wake("work")

    def interrupt(self, reason: str) -> None:
        """Ask the loop (from a signal handler) to stop the execution it is working on."""
        self.housekeeping.stop_reason = reason
        self.inbox.wake("interrupt")

    def close(self, *, reap: bool = True) -> None:
        """Stop the launcher and the runners; ``reap=False``: the python hosts are only
        told to exit, and whoever owns the runners closes them (reaps them) later."""
        self.launcher.close()
        self.inbox.close()
        if reap:
            self.runners.close()
        else:
            self.runners.hang_up()

    # -- the loop --------------------------------------------------------------------
    def _loop(self, execution_id: int | None) -> State | None:
        now = self.clock.now()
        self.housekeeping.start(now, reap=execution_id is None or self._reap)
        if execution_id is not None:
            self._deadline = self.store.get_execution(execution_id).deadline
        listening = self.store.listen(lambda: self.inbox.wake("notified"))
        # in-process wake-ups (SQLite) do not hear other processes: keep polling
        self._notified = listening is not None and getattr(listening, "cross_process", True)
        done: list[Reported] = []
        try:
            while True:
                now = self.clock.now()
                try:  # record what came in, claim what is ready: one transaction
                    result, claims, starting = self._step(done, now, execution_id)
                except StoreUnavailable as exc:
                    self._recover(exc, done)  # nothing was recorded: ``done`` is tried again
                    continue
                self._tell(done, result)
                done = []
                try:
                    ended = self._ended(execution_id, result, claims)
                    if ended is None:
                        self._launch(claims, starting)  # what fits in free slots starts
                        self._between_steps(now, execution_id)
                    if ended is not None or self._stopped():
                        return ended
                    self._collect(done, execution_id)  # wait for outcomes; gather a batch
                except StoreUnavailable as exc:
                    self._recover(exc, done)
        except BaseException as exc:
            if isinstance(exc, IllegalTransition):  # a bug: said where the worker's log is
                logger.error(
                    "worker %s: %s; the transaction that tried it was rolled back",
                    self.settings.worker_id,
                    exc,
                )
            for finished in done:  # not recorded: a loop started again records them
                self.inbox.put(finished)
            raise
        finally:
            self.launcher.hosts.release()  # nothing waits for this loop to read it
            if listening is not None:
                listening.close()

    def _tell(self, done: list[Reported], result: RecordResult) -> None:
        """The listener hears what was recorded, after the commit, never inside it."""
        self._delayed = self._delayed or bool(result.retries)
        for f in done:
            self.listener.finished(f.claim, f.outcome, f.claim.task_run_id in result.retries)
        for claim, outcome, retrying in result.nested:
            self.listener.finished(claim, outcome, retrying)

    def _launch(self, claims: list[Claim], starting: list[int]) -> None:
        launcher = self.launcher
        carried = {c.execution_id for c in launcher.waiting}  # claimed in an earlier step
        launcher.take(claims, self.clock.now(), set(starting))  # first: renewals see them
        launcher.drop_failing(carried | {c.execution_id for c in claims} & self._failed_now)
        launcher.launch_waiting()

    def _between_steps(self, now: float, execution_id: int | None) -> None:
        """Handlers' calls, then housekeeping when due."""
        self.launcher.calls.serve()
        self.launcher.calls.answer_waiters()
        self.housekeeping.run(now, execution_id)
        self.housekeeping.check_kills(now)
        self.housekeeping.hand_back_after_grace(now)

    def _stopped(self) -> bool:
        return self.housekeeping.stopping_at is not None and not self.launcher.running

    def _ended(
        self, execution_id: int | None, result: RecordResult, claims: list[Claim]
    ) -> State | None:
        """The final state of the execution worked on, once it has ended."""
        if execution_id is None:
            return None
        if execution_id in result.ended_executions:
            return result.ended_executions[execution_id]
        launcher = self.launcher
        if not claims and not launcher.running and not launcher.waiting:  # ended elsewhere?
            state = self.store.get_execution(execution_id).state
            if state.terminal:
                return state
        return None

    # -- one step: one transaction ---------------------------------------------------------
    def _step(
        self, done: list[Reported], now: float, execution_id: int | None
    ) -> tuple[RecordResult, list[Claim], list[int]]:
        """One transaction: logs, lease renewals, stops asked for, claims, outcomes (with
        all they decide), hand-backs, claims of what the outcomes just made ready, and
        the attempts launched (with the process groups they started). The claims, and
        those of them marked launched already (they fit in free slots)."""
        s, launcher = self.settings, self.launcher
        launcher.release_logs(now)
        logs, renew = self.logs.pending(), launcher.renewals(now)
        launched, processes = list(launcher.launched), list(launcher.processes)
        stopped = RecordResult()
        for ended in launcher.calls.take_steps():  # @tasks run in their flow's host
            self._receive(ended, done)
        try:
            result, claims, starting, answer = self._write_step(
                done, now, execution_id, logs, renew, launched, processes, stopped
            )
        except BaseException:
            launcher.calls.put_back()  # the @task calls it served are asked again
            raise
        answer()  # the @task calls whose task runs it started (committed now)
        # committed: forget what was written (all of it is kept when the commit fails)
        self.logs.written(len(logs))
        launcher.recorded(len(launched), len(processes))
        launcher.renewed(renew, now + s.claim_lease_seconds)
        self._handed = []
        launcher.held -= {f.claim.execution_id for f in done}
        self._failed_now = {f.claim.execution_id for f in done if f.outcome.state is State.FAILED}
        return result, claims, starting

    def _write_step(
        self,
        done: list[Reported],
        now: float,
        execution_id: int | None,
        logs: list[NewLog],
        renew: list[int],
        launched: list[int],
        processes: list[AttemptProcess],
        stopped: RecordResult,
    ) -> tuple[RecordResult, list[Claim], list[int], Callable[[], None]]:
        """The step's one transaction (see :meth:`_step`)."""
        s, launcher = self.settings, self.launcher
        with self.store.transaction():
            self.store.add_logs(logs)
            self.store.heartbeat(s.worker_id, renew, now + s.claim_lease_seconds)
            self._stop_asked(now, execution_id, stopped)
            # serving, claim before recording: the rows every recording transaction
            # updates (the execution's counters) then stay locked as briefly as possible;
            # working on one execution, record first: what it makes ready is claimed next
            claims: list[Claim] = []
            if execution_id is None and not stopped.ended_executions:
                claims = self._claim(now, execution_id)
            self._hand_back(now)
            result, last = self._record(done, now, execution_id, claims, stopped)
            answer = launcher.calls.serve_steps()  # flow functions' @task calls: started
            if last is None:  # not claimed with the outcomes: now, if they made any ready
                last = []
                if self.store.readied and execution_id not in result.ended_executions:
                    last = self._claim(now, execution_id, claims)
            claims += last  # those of them that start now are recorded launched
            # launched, or about to be (claims that fit in free slots): the full lease
            starting = launcher.starting(claims)
            ending = {f.claim.attempt_id for f in done}  # recorded now: no need to say launched
            ending.update(c.attempt_id for c in last)
            marked = [a for a in (*launched, *starting) if a not in ending]
            self.store.mark_launched(marked, now, now + s.lease_seconds)
            still = [p for p in processes if p.attempt_id in launcher.running]  # not ended
            self.store.record_processes(this_machine(), still)
        return result, claims, starting, answer

    def _record(
        self,
        done: list[Reported],
        now: float,
        execution_id: int | None,
        claims: list[Claim],
        stopped: RecordResult,
    ) -> tuple[RecordResult, list[Claim] | None]:
        """Record the outcomes; working on one execution, claim what they make ready
        with what records them when they are all successes (PostgreSQL: one round trip
        less), unless ``@task`` calls are served in between. The result, and what that
        claim took (None: it did not run)."""
        last: list[Claim] | None = None

        def claim(so_far: RecordResult) -> None:
            nonlocal last
            if execution_id not in so_far.ended_executions:  # (known already on SQLite)
                last = self._claim(now, execution_id, claims)

        early = execution_id is not None and not stopped.ended_executions
        early = early and not self.launcher.calls.serving
        self.store.readied = execution_id is not None
        outcomes = [(f.claim, f.outcome) for f in done]
        result = self.store.record_outcomes(outcomes, now, self.rng, claim if early else None)
        if self.settings.retry_keeps_slot:
            self._retrying.update(result.retries)
        result.ended_executions.update(stopped.ended_executions)
        result.nested.extend(stopped.nested)
        if last is None:
            return result, None
        if execution_id in result.ended_executions:
            # it ended meanwhile: what was claimed (a child's that does not wait: its
            # tree is this one) goes back, as this loop ends with it
            if last:
                self.store.hand_back(last, now, "the execution it was claimed with ended")
            return result, []
        if result.readied_after:  # made ready once the claim was sent: claimed now
            last += self._claim(now, execution_id, claims + last)
        return result, last

    def _stop_asked(self, now: float, execution_id: int | None, stopped: RecordResult) -> None:
        """The execution worked on fails when interrupted or past its deadline."""
        house = self.housekeeping
        if execution_id is None:
            return
        if house.stop_reason is not None:
            house.stop(execution_id, house.stop_reason, now, stopped)
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            house.stop(execution_id, "timeout", now, stopped)

    def _hand_back(self, now: float) -> None:
        """What a stopping worker gives up (its waiting claims, attempts it stopped), and
        claims this worker was too held up to start while they were surely its own."""
        launcher = self.launcher
        if self.housekeeping.stopping_at is not None and launcher.waiting:
            self._handed.extend(launcher.hand_back_waiting())
        if self._handed:
            self.store.hand_back(self._handed, now)
        if launcher.late:
            late, launcher.late = launcher.late, []
            why = "its claim was not renewed in time (the worker was held up)"
            self.store.hand_back(late, now, why)

    def ahead(self) -> int:
        """How many claims to take beyond the free slots: ``prefetch``, or, while this
        worker's attempts end quickly, as many as its slots run in ``prefetch_window`` (at
        most ``prefetch_max``; from ``prefetch`` again once idle), so that a step records
        and claims that many at once: PostgreSQL W2 ran 1.2-1.5x as fast with 64 ahead as
        with 16, and, once quick attempts were queued on their hosts and claims took a
        fair share of what is ready, 1.03-1.08x as fast again with 128 (interleaved
        medians of 4,970 and 5,120 runs/s), while a slow task taken ahead waits for a
        slot here when another worker may be free. Nothing ahead when ``prefetch`` is 0."""
        s = self.settings
        if not s.prefetch or self._typical is None:
            return s.prefetch
        quick = math.ceil(s.slots * s.prefetch_window / max(self._typical, 1e-6))
        return max(s.prefetch, min(quick, s.prefetch_max))

    def _claim(
        self, now: float, execution_id: int | None, before: list[Claim] | None = None
    ) -> list[Claim]:
        """Claim up to the free slots (and :meth:`ahead` more), each leased for
        ``claim_lease_seconds`` until it is launched. Given ``before`` (the step's
        claims so far: this is its last claim), those that fit in the free slots after
        them are recorded launched by the claim itself, by the rule of
        :meth:`Launcher.starting`, which then picks the same ones."""
        s, launcher = self.settings, self.launcher
        if self.housekeeping.stopping_at is not None:
            return []
        taken = before or []
        if not launcher.running and not launcher.waiting and not taken:
            self._typical = None  # idle: what comes next may be slower (see :meth:`ahead`)
        room = s.slots + self.ahead() - launcher.busy() - launcher.queued() - len(taken)
        queues = None if execution_id is not None else s.queues
        held = launcher.held
        launch = 0 if before is None else launcher.room()
        launch -= sum(1 for c in taken if c.execution_id not in held)

        # beyond what its free slots start now, a fair share of what is ready: at the
        # end of a fan-out the last claims are split among the workers alive
        free = max(s.slots - launcher.busy() - len(launcher.waiting) - len(taken), 0)
        fair = (free, now - 3 * s.heartbeat_every)

        def claim(limit: int, only: list[int] | None = None) -> list[Claim]:
            nonlocal launch
            claims = self.store.claim(
                s.worker_id,
                limit,
                now,
                s.claim_lease_seconds,
                execution_id=execution_id,
                queues=queues,
                only=only,
                launch=max(launch, 0),
                launch_lease_seconds=s.lease_seconds,
                held=held,
                fair=fair if only is None else None,
            )
            launch -= sum(1 for c in claims if c.execution_id not in held)
            return claims

        claims: list[Claim] = []
        if self._retrying:  # their slots are kept: they come first, nothing takes them
            claims = claim(room, sorted(self._retrying))
            self._retrying.difference_update(c.task_run_id for c in claims)
            room -= len(claims) + len(self._retrying)
        return claims + claim(room)

    # -- waiting for outcomes ----------------------------------------------------------------
    def _collect(self, done: list[Reported], execution_id: int | None) -> None:
        """Wait until an outcome or a wake-up arrives or something is due; while enough
        prefetched claims keep the slots busy, go on gathering a batch (:meth:`_defer`).
        Outcomes join ``done`` as they come (kept there if the store fails meanwhile)."""
        wake_at = min(self.housekeeping.due, self._deadline or NEVER)
        told = self._wait(done, execution_id, wake_at)
        while self._defer(done):
            told = self._wait(done, execution_id, wake_at)
        if told:  # a flow function's next call usually follows its @task's end at once
            for event in self.inbox.take(self.settings.told_delay):
                self._receive(event, done)

    def _wait(self, done: list[Reported], execution_id: int | None, due_at: float) -> bool:
        """Block until an event arrives or something is due; take all events there.
        Whether they were only ends of ``@task``s run in their flow functions' hosts."""
        if done and not self._defer(done):
            return False
        now = self.clock.now()
        events = self.inbox.take(min(self._due(done, execution_id, due_at, now)) - now)
        for event in events:
            self._receive(event, done)
        self.launcher.launch_waiting()  # freed slots start prefetched claims before we record
        return bool(events) and all(isinstance(e, Wake) and e.why == "told" for e in events)

    def _due(
        self, done: list[Reported], execution_id: int | None, due_at: float, now: float
    ) -> list[float]:
        """When the loop must look again, whatever arrives."""
        s, launcher = self.settings, self.launcher
        due = [due_at]
        if done:
            due.append(self._done_since + s.record_delay)
        if launcher.running:
            due.append(now + s.log_flush_every)
            due.append(self.housekeeping.kill_due)
        renewal = launcher.next_renewal()
        if renewal is not None:
            due.append(renewal)
        if launcher.calls.waiting:  # children may be ended by other workers
            due.append(now + 0.2)
        if execution_id is not None and not launcher.running and not launcher.waiting:
            # nothing of ours runs: the execution waits for a concurrency limit, or for
            # work other processes do (its children, a key's slot)
            due.append(now + s.idle_poll_every)
        if self.housekeeping.stopping_at is not None:
            due.append(self.housekeeping.stopping_at)
        elif launcher.busy() < s.slots and (self._delayed or execution_id is None):
            queues = None if execution_id is not None else s.queues
            next_ready = self.store.next_ready_time(now, execution_id=execution_id, queues=queues)
            if next_ready is not None:  # a retry waiting for its delay
                due.append(next_ready)
            self._delayed = next_ready is not None
            if execution_id is None or self._notified:
                due.append(now + (s.notified_poll_every if self._notified else s.poll_every))
        return due

    def _defer(self, done: list[Reported]) -> bool:
        """Whether to wait for more outcomes before recording: while enough prefetched
        claims wait to keep the slots busy through a step (so nothing waits for this
        record), up to :meth:`ahead` outcomes or ``record_delay`` seconds, so that one
        transaction records many."""
        s, launcher, house = self.settings, self.launcher, self.housekeeping
        if not done or len(launcher.waiting) < s.slots or len(done) >= max(self.ahead(), 1):
            return False  # record now: claims must come before the slots run dry
        if house.stopping_at is not None or house.stop_reason is not None or launcher.held:
            return False  # a failure is recorded at once: it may stop what waits
        return self.clock.now() < self._done_since + s.record_delay

    def _receive(self, event: Event, done: list[Reported]) -> None:
        """An event from the inbox: an outcome joins ``done`` (as the loop stopped it, if
        it did); a process group started is recorded in the next step."""
        if isinstance(event, ProcessStarted):
            self.launcher.processes.append(event.record())
            return
        if isinstance(event, Unstarted):
            self.launcher.put_back(event.claim)
            return
        if not isinstance(event, Reported):
            return  # a wake-up: the loop looks again
        claim, outcome = event.claim, event.outcome
        if not done:
            self._done_since = self.clock.now()
        if outcome.state is State.FAILED:  # nothing more of it starts until recorded
            self.launcher.held.add(claim.execution_id)
            if not self._allowed_to_fail(claim):
                self.launcher.hosts.withdraw(claim.execution_id)  # (nor what is queued)
        running = self.launcher.running.pop(claim.attempt_id, None)
        self.launcher.announced.discard(claim.attempt_id)
        if running is not None:  # how long attempts run: how many to claim ahead
            # (its context's functions name it: let go, it is freed now, not by the
            # garbage collector)
            running.context.call = running.context.step_log = None
            took = max(self.clock.now() - running.since, 0.0)
            self._typical = took if self._typical is None else 0.8 * self._typical + 0.2 * took
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
            event = Reported(claim, outcome)
        done.append(event)

    # -- faults ------------------------------------------------------------------------------
    def _allowed_to_fail(self, claim: Claim) -> bool:
        """Whether ``claim``'s task may fail (its failure stops nothing); not known
        (it never ran here: no store is asked on receiving): as one that may not."""
        running = self.launcher.running.get(claim.attempt_id)
        return running is not None and running.context.task.allow_failure

    def _recover(self, exc: StoreUnavailable, done: list[Reported]) -> None:
        """The database went away: wait with growing pauses until it answers again, then
        take up attempts leased to us whose claim committed although we never heard back
        (the connection died during COMMIT)."""
        pause = 0.1
        launcher = self.launcher
        launcher.hosts.release()  # their timeouts and output do not wait for the store
        while True:
            logger.warning("store unavailable (%s); reconnecting in %.1fs", exc, pause)
            time.sleep(pause)
            try:
                self.store.reconnect()
                known = {*launcher.running, *(c.attempt_id for c in launcher.waiting)}
                known |= {f.claim.attempt_id for f in done}
                known |= {c.attempt_id for c in [*self._handed, *launcher.late]}
                orphans = [
                    c
                    for c in self.store.running_claims(self.settings.worker_id)
                    if c.attempt_id not in known
                ]
                if orphans:
                    logger.warning("taking up %d attempts claimed before the fault", len(orphans))
                    # their lease is renewed by the next step, before any of them starts
                    launcher.take(orphans, self.clock.now() - self.settings.claim_lease_seconds / 2)
                return
            except StoreUnavailable as again:
                exc = again
                pause = min(pause * 2, 5.0)
