"""The worker's settings, and what it tells a progress display."""

from __future__ import annotations

import os
from typing import Protocol

from msgspec import Struct, field

from ordo.model import Outcome
from ordo.store.records import Claim


class Listener(Protocol):
    """Told what the worker does, for progress displays. Called on the loop thread."""

    def started(self, claim: Claim) -> None: ...

    def finished(self, claim: Claim, outcome: Outcome, retrying: bool) -> None: ...


class Silent:
    def started(self, claim: Claim) -> None:
        pass

    def finished(self, claim: Claim, outcome: Outcome, retrying: bool) -> None:
        pass


class WorkerSettings(Struct):
    """How a worker works: slots, leases, prefetch, queues, its id."""

    slots: int = os.cpu_count() or 2
    lease_seconds: float = 30.0
    #: claims not launched yet are leased this long only, renewed while they wait, so
    #: that those of a worker that died come back soon (its running attempts: after
    #: ``lease_seconds``); a claim is launched only while at least half of it is left
    claim_lease_seconds: float = 6.0
    heartbeat_every: float = 10.0
    log_flush_every: float = 0.2
    kill_grace: float = 5.0
    max_log_bytes: int = 10 * 1024 * 1024  # per attempt; the rest is dropped with a marker
    log_batch_lines: int = 2000  # buffered lines that wake the loop to write them early
    queues: tuple[str, ...] = ("default",)  # served by serve(); run_execution takes any
    prefetch: int = 16  # claims beyond the free slots, started as soon as a slot frees
    #: while attempts end quickly, more ahead: what the slots run in ``prefetch_window``
    #: seconds, up to ``prefetch_max`` (one step records and claims them together)
    prefetch_window: float = 0.2
    prefetch_max: int = 128
    #: up to this many plain python attempts (no timeout) are queued on a busy python
    #: host behind one of the same execution whose function ends within
    #: ``host_queue_below`` seconds of late, so that it goes on to them without
    #: waiting (0: never); a failure of the execution withdraws them: see hosts.py
    #: (PostgreSQL W2, interleaved: 6 ran 1.03-1.10x as fast as 3, and 8 0.91x of 6)
    host_queue: int = 6
    host_queue_below: float = 0.005
    record_delay: float = 0.05  # how long outcomes may wait to be recorded together
    #: how long the end of a @task run in its flow function's host may wait for the
    #: function's next call (usually at once), so that one step records it and starts
    #: the next
    told_delay: float = 0.002
    kill_check_every: float = 0.5  # while attempts run: how often to look for kills
    grace: float = 30.0  # serve(): how long running attempts may finish after stop()
    reap_every: float = 3.0  # serve(): how often expired leases are looked for
    poll_every: float = 1.0  # serve() without notifications: how often to look for work
    notified_poll_every: float = 5.0  # with LISTEN/NOTIFY: a safety net only
    idle_poll_every: float = 0.2  # run_execution() with nothing running: look again
    # a task run waiting for its retry keeps its slot: nothing else takes it meanwhile
    # (``ordo executioner``: a job's retries belong to its run, also in sequential mode)
    retry_keeps_slot: bool = False
    worker_id: str = field(
        default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}:{os.urandom(3).hex()}"
    )
