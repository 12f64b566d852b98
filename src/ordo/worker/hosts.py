"""Python attempts whose hosts the loop reads itself.

A plain python task (a function or a script, without checks, a run_if or calls into
ordo) is sent to a warm host by the loop, which then reads the host's pipes in its own
wait (:meth:`~ordo.worker.events.Inbox.watch`) and records the reply as soon as it comes:
no thread of the worker takes part. Handing each attempt to a thread of its own cost
more than the task: on the 2-core machine, 7.2 thread switches per task run of
PostgreSQL W2 (now 1.4), and, for two hosts kept busy with no-op tasks, 125 µs of the
parent's CPU per task, against 53 µs read from one loop.

While attempts end quickly, up to ``host_queue`` (6) more of the same execution are
queued behind the one a host runs (:meth:`HostDriver.behind`): the host goes from one
to the next without waiting for the loop, and neither process sleeps and wakes between
two tasks (waking a process that is on its way to sleep cost the waker 10 µs here, and a
host that slept runs its next task from cold caches). In PostgreSQL W2 that saved 78 µs
of CPU per task run (worker 188 -> 150 µs, hosts 115 -> 75 µs) and ran 1.2x as fast. A
queued attempt holds no slot until it starts; one that never starts (its host stopped
or died first, or did not run it because the task before it failed or the worker
withdrew it, :meth:`HostDriver.withdraw`, on a failure of its execution elsewhere: the
execution may be failing) goes back to the claims waiting for a slot, or ends KILLED
when its execution was killed.

What may wait goes to a thread, with the attempt's reading as it stands (and the
attempts queued behind it): a call into ordo (answered by the loop, which cannot wait
for itself), and the end of an attempt whose host must be stopped (a timeout, a kill,
a host that died), which waits for the host's process tree to end.
"""

from __future__ import annotations

import logging
import math
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor

from ordo.model import Outcome, State, Task, function_run_if
from ordo.runners import RunnerSet
from ordo.runners.base import crashed
from ordo.runners.process import Finished
from ordo.runners.python import DRAIN_READS, Host, HostRun, NoRoom, PythonRunner
from ordo.worker.calls import Running
from ordo.worker.events import Inbox

logger = logging.getLogger(__name__)

#: How often, at most, the attempts driven are looked at for their deadline, a cancel
#: or a host that died (and at least every :data:`~ordo.worker.events.TICK`).
LOOK_EVERY = 0.01

#: An attempt and its reading, on its host.
Driven = tuple[Running, HostRun]


class HostDriver:
    """The attempts the loop drives (:meth:`start`); each ends through ``end(running,
    outcome)``, on the loop thread or, for one handed over, on a thread of ``pool``; one
    queued that never started goes back through ``unstarted(running)``."""

    def __init__(
        self,
        runners: RunnerSet,
        inbox: Inbox,
        pool: Executor,
        end: Callable[[Running, Outcome], None],
        unstarted: Callable[[Running], None] | None = None,
        now: Callable[[], float] = time.time,
        queue: int = 0,
        below: float = 0.0,
    ) -> None:
        self.runners = runners
        self.inbox = inbox
        self.pool = pool
        self.end = end
        self.unstarted = unstarted or _never
        self.now = now
        self.queue = queue  # attempts that may be queued behind a running one
        self.below = below  # ... while the function it runs ends within this (seconds)
        self._typical: dict[tuple[str, str], float] = {}  # how long each function runs
        self._runs: dict[int, Driven] = {}  # the attempts running, by attempt id
        self._queued: dict[int, list[Driven]] = {}  # those queued behind each of them
        self._fds: dict[int, int] = {}  # watched fd -> attempt id
        #: hosts with attempts queued whose reading went to a thread: their execution,
        #: and the chain's own mark (the thread forgets only its own)
        self._away: dict[Host, tuple[int, object]] = {}
        self._away_lock = threading.Lock()
        self._looked = 0.0  # when deadlines, cancels and exits were last looked at
        inbox.tick = self._tick

    def takes(self, running: Running) -> bool:
        """Whether ``running`` is a plain python attempt this driver can run."""
        ctx = running.context
        return (
            ctx.task.type == "python"
            and ctx.checks is None
            and ctx.run_if is None
            and not ctx.fields.get("flow_function")
            and not ctx.fields.get("step")
            and isinstance(self.runners.get("python"), PythonRunner)
        )

    def behind(self, execution_id: int, task: Task) -> HostRun | None:
        """The attempt (running, or queued last) to queue an attempt of ``task`` behind:
        on a host whose attempts are all of ``execution_id`` (a kill or a failure of
        one concerns the others), without a timeout (stopping the host for one would
        stop them all) and of functions that end quickly (:meth:`quick`): fewest queued
        first. None: start it on a host of its own, when a slot is free."""
        if not self.queue or not self._runs or not _plain(task):
            return None
        best: list[Driven] | None = None
        for attempt_id, (running, attempt) in self._runs.items():
            queued = self._queued.get(attempt_id, [])
            if len(queued) >= self.queue or attempt.listening.replies.reply is not None:
                continue  # (full, or its reply has come: it is ending now)
            chain = [(running, attempt), *queued]
            shorter = best is None or len(chain) < len(best)
            if shorter and all(self._may_queue(r, execution_id) for r, _ in chain):
                best = chain
        return None if best is None else best[-1][1]

    def quick(self, running: Running) -> bool:
        """Whether the function ``running`` runs has ended within ``below`` seconds of
        late (its attempts' durations, weighted to the last ones; unknown: not quick)."""
        took = self._typical.get(_function(running))
        return took is not None and took <= self.below

    def _may_queue(self, running: Running, execution_id: int) -> bool:
        ctx = running.context
        return (
            running.claim.execution_id == execution_id
            and ctx.timeout is None
            and not ctx.cancel.is_set()
            and self.quick(running)
        )

    def _took(self, running: Running) -> None:
        """Note how long ``running`` ran (from its start on its host to its reply)."""
        key, took = _function(running), max(self.now() - running.since, 0.0)
        last = self._typical.get(key)
        if last is None and len(self._typical) >= 4096:
            self._typical.clear()
        self._typical[key] = took if last is None else 0.8 * last + 0.2 * took

    def start(self, running: Running, behind: HostRun | None = None) -> None:
        """Send the attempt to a host (queued ``behind`` that attempt, when given); its
        pipes are read from now on by the loop (when queued, once those before it end)."""
        runner = self.runners.get("python")
        assert isinstance(runner, PythonRunner)
        try:
            attempt = runner.start(running.context, calls=False, behind=behind)
        except Exception as exc:
            if behind is not None:  # its host went away, or has no room: it starts later
                if isinstance(exc, NoRoom) and exc.too_big:  # (never queued: too big)
                    self._typical[_function(running)] = math.inf
                self.unstarted(running)
                return
            logger.exception("runner python crashed")  # a runner bug must not lose it
            self.end(running, crashed(exc))
            return
        if behind is not None:
            running.queued = True
            for first, queued in self._queued.items():
                if first == behind.ctx.attempt_id or any(a is behind for _, a in queued):
                    queued.append((running, attempt))
                    return
        self._read(running, attempt)

    def withdraw(self, execution_id: int) -> None:
        """An attempt of ``execution_id`` failed (its host said so, or its outputs did
        not read): the attempts of it queued on hosts are not run, unless already
        started (:meth:`~ordo.runners.python.Host.withdraw`); they come back unstarted,
        to start once the next step has asked whether their execution is failing."""
        for attempt_id, (running, attempt) in self._runs.items():
            if self._queued.get(attempt_id) and running.claim.execution_id == execution_id:
                attempt.host.withdraw()
        with self._away_lock:
            away = [host for host, (of, _) in self._away.items() if of == execution_id]
        for host in away:
            host.withdraw()

    def release(self) -> None:
        """The loop stops reading (it ends, or waits for the store to come back): what
        it drives goes on, and ends, on the pool's threads."""
        for attempt_id in list(self._runs):
            self._hand_over(attempt_id, None)

    # -- on the loop thread, from its wait ------------------------------------------------
    def _read(self, running: Running, attempt: HostRun) -> None:
        attempt_id = running.claim.attempt_id
        self._runs[attempt_id] = (running, attempt)
        self._queued.setdefault(attempt_id, [])
        for fd in attempt.listening.pump.open_fds:
            if fd not in self._fds:  # (else watched still, for the attempt before it)
                self.inbox.watch(fd, self._ready)
            self._fds[fd] = attempt_id

    def _ready(self, fd: int) -> None:
        attempt_id = self._fds.get(fd)
        if attempt_id is None or attempt_id not in self._runs:  # (handed over meanwhile)
            return
        try:
            attempt = self._runs[attempt_id][1]
            pump = attempt.listening.pump
            if not pump.read(fd):
                self._unwatch(fd)
            if attempt.listening.calls.asked or pump.complete():
                self._check(attempt_id, time.monotonic())  # (else the next tick looks)
        except Exception as exc:
            self._crash(attempt_id, exc)

    def _tick(self) -> None:
        """After each wake-up of the wait: deadlines, cancels and hosts that died are
        looked at (every ``LOOK_EVERY`` seconds at most: a look costs a system call)."""
        now = time.monotonic()
        if now - self._looked < LOOK_EVERY:
            return
        self._looked = now
        for attempt_id in list(self._runs):
            try:
                self._check(attempt_id, now)
            except Exception as exc:
                self._crash(attempt_id, exc)

    def _check(self, attempt_id: int, now: float) -> None:
        found = self._runs.get(attempt_id)
        if found is None:  # (ended by an earlier look of this wake-up)
            return
        running, attempt = found
        listening = attempt.listening
        if listening.calls.asked and self._queued[attempt_id]:
            _read_now(attempt)  # a call past its reply is the next one's
        if listening.calls.asked and not listening.pump.complete():
            self._hand_over(attempt_id, None)  # its call: the rest of it runs on a thread
            return
        ended = listening.pump.over(now)
        if ended is None:
            return
        if ended.timed_out or ended.cancelled or listening.replies.reply is None:
            self._hand_over(attempt_id, ended)  # its host is stopped: that may wait
            return
        # (with attempts queued behind it, its host's fds stay watched for the next)
        queued = self._forget(attempt_id, keep_fds=bool(self._queued.get(attempt_id)))
        if attempt.not_run:  # it comes back; its host answers those behind it alike
            self._put_back([(running, attempt)])
            self._read_through(attempt, ended, queued, now)
            return
        self._took(running)
        try:
            outcome, left = attempt.settle(ended, keep=bool(queued))
            if left is not None:  # no room among the idle hosts: stopping it may wait
                self.pool.submit(left.stop, running.context.kill_grace)
        except Exception as exc:  # a runner bug must not lose the attempt
            logger.exception("runner python crashed")
            outcome = crashed(exc)
        try:
            self.end(running, outcome)
        finally:  # (those queued behind it go on, whatever became of its end)
            if queued:
                self._next(attempt, queued, now)

    def _next(self, before: HostRun, queued: list[Driven], now: float) -> None:
        """The first of ``queued`` runs now on the host ``before`` ran on (when it went
        on to it); the others stay queued behind it."""
        if not before.host.alive or not before.listening.took_next():
            self._unwatch_owned(before.ctx.attempt_id)
            self._retire(before)
            self._put_back(queued)
            return
        (running, attempt), rest = queued[0], queued[1:]
        attempt.listening.take_over(before.listening)
        attempt.started()
        running.queued = False
        running.since = self.now()  # (how long attempts take: from their start)
        self._read(running, attempt)
        self._unwatch_owned(before.ctx.attempt_id)  # (an fd its reading had closed)
        self._queued[running.claim.attempt_id] = rest
        if attempt.listening.calls.asked or attempt.listening.pump.complete():
            self._check(running.claim.attempt_id, now)

    def _read_through(
        self, attempt: HostRun, ended: Finished, queued: list[Driven], now: float
    ) -> None:
        """``attempt`` was not run: its host goes on to those queued behind it (it does
        not run them either), then back to the pool, as after a task."""
        try:
            _, left = attempt.settle(ended, keep=bool(queued))
        except Exception:  # (its host is not pooled: it goes, and those behind it too)
            logger.exception(
                "reading the python process of attempt %d failed", attempt.ctx.attempt_id
            )
            self._unwatch_owned(attempt.ctx.attempt_id)
            self._retire(attempt)
            self._put_back(queued)
            return
        if left is not None:  # no room among the idle hosts: stopping it may wait
            self.pool.submit(left.stop, attempt.ctx.kill_grace)
        if queued:
            self._next(attempt, queued, now)

    def _retire(self, attempt: HostRun) -> None:
        """Stop the host ``attempt`` ran on (on a thread: that may wait), once nothing
        of it can be used: requests are queued on it that it will not run."""
        attempt.host.alive = False
        self.pool.submit(attempt.host.stop, attempt.ctx.kill_grace)

    def _put_back(self, queued: list[Driven]) -> None:
        """Attempts queued on a host that never started them: to be started again (on
        any thread), first in line in the order they were (see
        :meth:`~ordo.worker.launch.Launcher.put_back`)."""
        for running, attempt in queued:
            attempt.files.remove()
            attempt.released = True
            if running.context.cancel.is_set():
                self.end(running, Outcome(State.KILLED, reason="killed", error="killed on request"))
            else:
                self.unstarted(running)

    # -- handing over to a thread -----------------------------------------------------------
    def _hand_over(self, attempt_id: int, ended: Finished | None) -> None:
        """The attempt goes on (``ended`` None: its calls are answered and its reading
        goes on) or ends on a thread of the pool; so do those queued behind it."""
        if attempt_id not in self._runs:  # (handed over already)
            return
        running, attempt = self._runs[attempt_id]
        queued = self._forget(attempt_id)
        mark = object()
        if queued:
            with self._away_lock:
                self._away[attempt.host] = (running.claim.execution_id, mark)
        self.pool.submit(self._finish, running, attempt, ended, queued, mark)

    def _home(self, host: Host, mark: object) -> None:
        """The chain ``mark`` no longer has attempts queued on ``host``."""
        with self._away_lock:
            if self._away.get(host, (0, None))[1] is mark:
                del self._away[host]

    def _finish(
        self,
        running: Running,
        attempt: HostRun,
        ended: Finished | None,
        queued: list[Driven],
        mark: object,
    ) -> None:
        host = attempt.host  # (the chain's: each of its attempts runs there)
        try:
            while True:
                if not queued:  # (nothing to withdraw: its host may be pooled now)
                    self._home(host, mark)
                outcome = crashed(RuntimeError("no outcome"))
                try:
                    if ended is None:
                        attempt.listening.serve_calls()
                        ended = attempt.listening.pump.run()
                    if attempt.not_run:
                        attempt.listening.close()
                        attempt.host.alive = False
                        attempt.host.stop(attempt.ctx.kill_grace)
                        self._put_back([(running, attempt), *queued])
                        return
                    outcome = attempt.finish(ended, keep=bool(queued))
                except Exception as exc:
                    logger.exception("runner python crashed")
                    outcome = crashed(exc)
                    _abandon(attempt)
                finally:
                    if not attempt.not_run:
                        self.end(running, outcome)
                if not queued:
                    return
                if not attempt.host.alive or not attempt.listening.took_next():
                    attempt.host.alive = False
                    attempt.host.stop(attempt.ctx.kill_grace)
                    self._put_back(queued)
                    return
                before = attempt
                (running, attempt), queued, ended = queued[0], queued[1:], None
                attempt.listening.take_over(before.listening)
                attempt.started()
                running.queued = False
        finally:
            self._home(host, mark)

    def _crash(self, attempt_id: int, exc: Exception) -> None:
        logger.exception("runner python crashed")
        found = self._runs.get(attempt_id)
        if found is None:  # (ended already; its host's fds may have been kept for the next)
            self._unwatch_owned(attempt_id)
            return
        queued = self._forget(attempt_id)
        try:
            _abandon(found[1])
        finally:
            self.end(found[0], crashed(exc))
            self._put_back(queued)

    def _forget(self, attempt_id: int, *, keep_fds: bool = False) -> list[Driven]:
        """The attempt is no longer read here: those queued behind it. ``keep_fds``:
        its host's fds stay watched, for the next of them (:meth:`_next` points them at
        it, or lets them go)."""
        self._runs.pop(attempt_id, None)
        if not keep_fds:
            self._unwatch_owned(attempt_id)
        return self._queued.pop(attempt_id, [])

    def _unwatch_owned(self, attempt_id: int) -> None:
        for fd in [fd for fd, owner in self._fds.items() if owner == attempt_id]:
            self._unwatch(fd)

    def _unwatch(self, fd: int) -> None:
        self._fds.pop(fd, None)
        self.inbox.unwatch(fd)


def _plain(task: Task) -> bool:
    """Whether attempts of ``task`` are driven by the loop and have no timeout (known
    from the task itself, before an attempt is prepared)."""
    spec = task.spec
    return (
        task.type == "python"
        and task.timeout is None
        and not task.pre_checks
        and not task.post_checks
        and function_run_if(task.run_if) is None  # (a template one is answered first)
        and not spec.get("flow_function")
        and not spec.get("step")
    )


def _function(running: Running) -> tuple[str, str]:
    """What a plain python attempt runs: its flow's folder, and its function or script
    (kept: a queued attempt is asked again each time one is queued behind it)."""
    key = running.function
    if key is None:
        ctx = running.context
        key = running.function = (
            ctx.base_dir,
            str(ctx.fields.get("function") or ctx.fields.get("script")),
        )
    return key


def _never(running: Running) -> None:
    raise AssertionError("nothing is queued on hosts without a queue")


def _read_now(attempt: HostRun) -> None:
    """Read what the attempt's pipes hold now, without waiting for more."""
    pump = attempt.listening.pump
    poller = select.poll()
    for fd in pump.open_fds:
        poller.register(fd, select.POLLIN)
    for _ in range(DRAIN_READS):
        ready = poller.poll(0)
        if not ready:
            return
        for fd, _ in ready:
            if not pump.read(fd):
                poller.unregister(fd)


def _abandon(attempt: HostRun) -> None:
    try:
        attempt.abandon()
    except Exception:
        logger.exception("stopping the python host of attempt %d failed", attempt.ctx.attempt_id)
