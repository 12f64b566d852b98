"""Housekeeping, each when due: leases (this worker's heartbeat), dead workers' attempts
(reaping, after stopping their processes on this machine), executions being killed or
past their timeout, and the hand-back of what a stopping worker did not finish."""

from __future__ import annotations

import logging
import random

from ordo.clock import Clock
from ordo.runners.process import stop_groups, this_machine
from ordo.store import Store
from ordo.store.records import RecordResult
from ordo.worker.launch import Launcher
from ordo.worker.settings import WorkerSettings

logger = logging.getLogger(__name__)

NEVER = float("inf")


class Housekeeping:
    """What the loop does besides claiming and recording, when it is due."""

    def __init__(
        self,
        store: Store,
        settings: WorkerSettings,
        clock: Clock,
        rng: random.Random,
        launcher: Launcher,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.launcher = launcher
        self.heartbeat_due = NEVER
        self.reap_due = NEVER
        self.kill_due = 0.0  # when to look again for executions being killed
        self.stop_reason: str | None = None  # asked from a signal handler
        self.stopping_at: float | None = None  # stop(): when to hand back what runs

    def start(self, now: float, *, reap: bool) -> None:
        self.heartbeat_due = now + self.settings.heartbeat_every
        self.reap_due = now if reap else NEVER

    @property
    def due(self) -> float:
        return min(self.heartbeat_due, self.reap_due)

    def run(self, now: float, execution_id: int | None) -> None:
        """Leases and the workers table (heartbeat), other executions past their
        timeout (serving) and dead workers' attempts (reap), each when due."""
        s = self.settings
        if now >= self.heartbeat_due:
            running = list(self.launcher.running)
            relaunch = list(self.launcher.relaunch)  # (launched, waiting to start again)
            self.store.heartbeat(s.worker_id, [*running, *relaunch], now + s.lease_seconds)
            self.launcher.renewed(relaunch, now + s.lease_seconds - s.heartbeat_every)
            if execution_id is None:
                self.store.worker_heartbeat(s.worker_id, len(running), now)
                for expired in self.store.expired_executions(now):
                    self.stop(expired, "timeout", now, RecordResult())
            self.heartbeat_due = now + s.heartbeat_every
        if now >= self.reap_due:
            self.reap(now)
            self.reap_due = now + s.reap_every

    def reap(self, now: float) -> None:
        """Take back attempts whose lease expired (their worker died or hangs); those
        that started processes on this machine have them stopped first, so that no
        task runs twice at once."""
        lost = self.store.lost_processes(this_machine(), expired_at=now)
        if lost:
            stopped = stop_groups([(p.group, p.started) for p in lost], self.settings.kill_grace)
            if stopped:
                logger.warning("stopped the processes of lost attempts: groups %s", stopped)
        reaped = self.store.reap_expired(now, self.rng)
        if reaped.retries or reaped.ended_executions:
            logger.warning("reaped attempts of lost workers: %s", reaped)

    def check_kills(self, now: float) -> None:
        """Stop attempts whose execution is being killed (``ordo kill``, any process),
        looked for every ``kill_check_every`` seconds while attempts run here."""
        launcher = self.launcher
        if now < self.kill_due or not (launcher.running or launcher.waiting):
            return
        self.kill_due = now + self.settings.kill_check_every
        ids = {r.claim.execution_id for r in launcher.running.values()}
        ids |= {c.execution_id for c in launcher.waiting}
        killing = self.store.killing_among(ids)
        if killing:
            logger.info("killing the attempts of executions %s", sorted(killing))
            launcher.cancel(killing, "killed", "killed on request")

    def stop(self, execution_id: int, reason: str, now: float, result: RecordResult) -> None:
        """Fail an execution: its unstarted task runs end SKIPPED, running attempts here
        are stopped and end FAILED with the same reason."""
        self.stop_reason = None
        message = "execution timed out" if reason == "timeout" else reason
        sub = self.store.fail_execution(execution_id, message, now)
        result.ended_executions.update(sub.ended_executions)
        result.nested.extend(sub.nested)
        self.launcher.cancel(sub.stopped | {execution_id}, reason, message)

    def hand_back_after_grace(self, now: float) -> None:
        """A stopping worker's grace has passed: stop what still runs (it is handed
        back when it reports)."""
        if self.stopping_at is None or now < self.stopping_at:
            return
        for running in self.launcher.running.values():
            if running.cancel_reason is None:
                running.cancel_reason = "handed back"
                running.context.cancel.set()
