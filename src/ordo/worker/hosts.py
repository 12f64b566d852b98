"""Python attempts whose hosts the loop reads itself.

A plain python task (a function or a script, without checks, a run_if or calls into
ordo) is sent to a warm host by the loop, which then reads the host's pipes in its own
wait (:meth:`~ordo.worker.events.Inbox.watch`) and records the reply as soon as it comes:
no thread of the worker takes part. Handing each attempt to a thread of its own cost
more than the task: on the 2-core machine, 7.2 thread switches per task run of
PostgreSQL W2 (now 1.4), and, for two hosts kept busy with no-op tasks, 125 µs of the
parent's CPU per task, against 53 µs read from one loop.

What may wait goes to a thread, with the attempt's reading as it stands: a call into ordo
(answered by the loop, which cannot wait for itself), and the end of an attempt whose
host must be stopped (a timeout, a kill, a host that died), which waits for the host's
process tree to end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor

from ordo.model import Outcome
from ordo.runners import RunnerSet
from ordo.runners.base import crashed
from ordo.runners.process import Finished
from ordo.runners.python import HostRun, PythonRunner
from ordo.worker.calls import Running
from ordo.worker.events import Inbox

logger = logging.getLogger(__name__)

#: How often, at most, the attempts driven are looked at for their deadline, a cancel
#: or a host that died (and at least every :data:`~ordo.worker.events.TICK`).
LOOK_EVERY = 0.01


class HostDriver:
    """The attempts the loop drives (:meth:`start`); each ends through ``end(running,
    outcome)``, on the loop thread or, for one handed over, on a thread of ``pool``."""

    def __init__(
        self,
        runners: RunnerSet,
        inbox: Inbox,
        pool: Executor,
        end: Callable[[Running, Outcome], None],
    ) -> None:
        self.runners = runners
        self.inbox = inbox
        self.pool = pool
        self.end = end
        self._runs: dict[int, tuple[Running, HostRun]] = {}  # by attempt id
        self._fds: dict[int, int] = {}  # watched fd -> attempt id
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

    def start(self, running: Running) -> None:
        """Send the attempt to a host; its pipes are read from now on by the loop."""
        runner = self.runners.get("python")
        assert isinstance(runner, PythonRunner)
        try:
            attempt = runner.start(running.context, calls=False)
        except Exception as exc:  # a runner bug must not lose the attempt
            logger.exception("runner python crashed")
            self.end(running, crashed(exc))
            return
        attempt_id = running.claim.attempt_id
        self._runs[attempt_id] = (running, attempt)
        for fd in attempt.listening.pump.open_fds:
            self._fds[fd] = attempt_id
            self.inbox.watch(fd, self._ready)

    def release(self) -> None:
        """The loop stops reading (it ends, or waits for the store to come back): what
        it drives goes on, and ends, on the pool's threads."""
        for attempt_id in list(self._runs):
            self._hand_over(attempt_id, None)

    # -- on the loop thread, from its wait ------------------------------------------------
    def _ready(self, fd: int) -> None:
        attempt_id = self._fds.get(fd)
        if attempt_id is None:  # (handed over meanwhile)
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
        running, attempt = self._runs[attempt_id]
        listening = attempt.listening
        if listening.calls.asked:  # a call into ordo: the rest of it runs on a thread
            self._hand_over(attempt_id, None)
            return
        ended = listening.pump.over(now)
        if ended is None:
            return
        if ended.timed_out or ended.cancelled or listening.replies.reply is None:
            self._hand_over(attempt_id, ended)  # its host is stopped: that may wait
            return
        self._forget(attempt_id)
        try:
            outcome, left = attempt.settle(ended)
            if left is not None:  # no room among the idle hosts: stopping it may wait
                self.pool.submit(left.stop, running.context.kill_grace)
        except Exception as exc:  # a runner bug must not lose the attempt
            logger.exception("runner python crashed")
            outcome = crashed(exc)
        self.end(running, outcome)

    # -- handing over to a thread -----------------------------------------------------------
    def _hand_over(self, attempt_id: int, ended: Finished | None) -> None:
        """The attempt goes on (``ended`` None: its calls are answered and its reading
        goes on) or ends on a thread of the pool."""
        found = self._forget(attempt_id)
        if found is not None:  # (not handed over already)
            self.pool.submit(self._finish, *found, ended)

    def _finish(self, running: Running, attempt: HostRun, ended: Finished | None) -> None:
        outcome = crashed(RuntimeError("no outcome"))
        try:
            if ended is None:
                attempt.listening.serve_calls()
                ended = attempt.listening.pump.run()
            outcome = attempt.finish(ended)
        except Exception as exc:
            logger.exception("runner python crashed")
            outcome = crashed(exc)
            _abandon(attempt)
        finally:
            self.end(running, outcome)

    def _crash(self, attempt_id: int, exc: Exception) -> None:
        logger.exception("runner python crashed")
        found = self._forget(attempt_id)
        if found is None:  # (ended already)
            return
        try:
            _abandon(found[1])
        finally:
            self.end(found[0], crashed(exc))

    def _forget(self, attempt_id: int) -> tuple[Running, HostRun] | None:
        """The attempt, no longer read here (None: it was not)."""
        found = self._runs.pop(attempt_id, None)
        if found is not None:
            for fd in [fd for fd, owner in self._fds.items() if owner == attempt_id]:
                self._unwatch(fd)
        return found

    def _unwatch(self, fd: int) -> None:
        self._fds.pop(fd, None)
        self.inbox.unwatch(fd)


def _abandon(attempt: HostRun) -> None:
    try:
        attempt.abandon()
    except Exception:
        logger.exception("stopping the python host of attempt %d failed", attempt.ctx.attempt_id)
