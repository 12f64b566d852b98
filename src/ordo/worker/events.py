"""What the worker's threads tell its loop, as typed events on one inbox.

Runner threads, handler calls, the log buffer and signal handlers never touch the store:
they put an event here and the loop thread, which owns the store connection, acts on it.
"""

from __future__ import annotations

import collections
import queue

from msgspec import Struct

from ordo.clock import Clock
from ordo.model import Outcome
from ordo.store.records import AttemptProcess, Claim


class Reported(Struct, frozen=True):
    """An attempt reported its outcome (it ran, was stopped, skipped or failed to
    prepare): record it."""

    claim: Claim
    outcome: Outcome


class Wake(Struct, frozen=True):
    """Look again now: work may be ready, a call waits, logs pile up, a stop was asked."""

    why: str = ""


class ProcessStarted(Struct, frozen=True):
    """An attempt's process started, leading process group ``group`` (its start time,
    in clock ticks since boot, in ``started``; None where it cannot be read): recorded
    with the attempt, so that whoever takes the attempt back after this worker died can
    stop that group first (:mod:`ordo.worker.processes`)."""

    attempt_id: int
    group: int
    started: int | None

    def record(self) -> AttemptProcess:
        return AttemptProcess(self.attempt_id, self.group, self.started)


Event = Reported | Wake | ProcessStarted


class Inbox:
    """The loop's queue of events; any thread may put, only the loop takes."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._quiet: collections.deque[Event] = collections.deque()

    def put(self, event: Event) -> None:
        self._queue.put(event)

    def note(self, event: Event) -> None:
        """Queue ``event`` without waking the loop: it is taken with the next one (the
        loop steps at least every ``log_flush_every`` while attempts run)."""
        self._quiet.append(event)

    def finished(self, claim: Claim, outcome: Outcome) -> None:
        self._queue.put(Reported(claim, outcome))

    def wake(self, why: str = "") -> None:
        self._queue.put(Wake(why))

    def take(self, timeout: float) -> list[Event]:
        """Wait up to ``timeout`` seconds for an event; then every event that is there
        (noted ones too, even when none came)."""
        first = self.clock.wait(self._queue, timeout)
        events = [] if first is None else [first]
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                break
        while self._quiet:
            events.append(self._quiet.popleft())
        return events
