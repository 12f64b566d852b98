"""What the worker's threads tell its loop, as typed events on one inbox.

Runner threads, handler calls, the log buffer and signal handlers never touch the store:
they put an event here and the loop thread, which owns the store connection, acts on it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import select
import time
from collections.abc import Callable
from typing import Any

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
    stop that group first (:meth:`ordo.worker.housekeeping.Housekeeping.reap`)."""

    attempt_id: int
    group: int
    started: int | None

    def record(self) -> AttemptProcess:
        return AttemptProcess(self.attempt_id, self.group, self.started)


class Unstarted(Struct, frozen=True):
    """An attempt queued on a python host that never started it (its host stopped or
    died first, or the task before it failed): it waits for a slot again."""

    claim: Claim


Event = Reported | Wake | ProcessStarted | Unstarted

#: While the loop reads fds, it looks at deadlines and cancels at least this often.
TICK = 0.05


class Inbox:
    """The loop's queue of events; any thread may put, only the loop takes. While the
    loop itself reads file descriptors (:meth:`watch`: python hosts whose attempts it
    drives), its wait is a poll over them and a wake-up pipe, which :meth:`put` writes
    to while the loop sleeps there."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._quiet: collections.deque[Event] = collections.deque()
        self._watched: dict[int, Callable[[int], None]] = {}
        self._poller: Any = None  # select.poll, made on first watch
        self._wake: tuple[int, int] | None = None  # the wake-up pipe: read end, write end
        self._polling = False  # the loop sleeps in poll: a put must write to the pipe
        #: called after every wake-up of a poll (and at least every ``TICK`` seconds)
        #: while fds are watched: their owner checks deadlines and cancels there
        self.tick: Callable[[], None] = lambda: None

    def put(self, event: Event) -> None:
        self._queue.put(event)
        if self._polling:
            self._ring()

    def note(self, event: Event) -> None:
        """Queue ``event`` without waking the loop: it is taken with the next one (the
        loop steps at least every ``log_flush_every`` while attempts run)."""
        self._quiet.append(event)

    def finished(self, claim: Claim, outcome: Outcome) -> None:
        self.put(Reported(claim, outcome))

    def wake(self, why: str = "") -> None:
        self.put(Wake(why))

    def watch(self, fd: int, ready: Callable[[int], None]) -> None:
        """Have the loop's wait call ``ready(fd)`` (on the loop thread) when ``fd`` can
        be read (or was closed), until :meth:`unwatch`."""
        if self._poller is None:
            self._poller = select.poll()
            self._wake = os.pipe()
            for end in self._wake:
                os.set_blocking(end, False)
            self._poller.register(self._wake[0], select.POLLIN)
        self._poller.register(fd, select.POLLIN)
        self._watched[fd] = ready

    def unwatch(self, fd: int) -> None:
        if self._watched.pop(fd, None) is not None:
            self._poller.unregister(fd)

    def take(self, timeout: float) -> list[Event]:
        """Wait up to ``timeout`` seconds for an event; then every event that is there
        (noted ones too, even when none came)."""
        first = self.clock.wait(self, timeout)
        events = [] if first is None else [first]
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                break
        while self._quiet:
            events.append(self._quiet.popleft())
        return events

    def get(self, timeout: float | None = None) -> Event:
        """The next event, waiting up to ``timeout`` seconds (then :class:`queue.Empty`),
        reading watched fds meanwhile: what the clock waits on (as on a queue). The fds
        are looked at first even when an event is there already, so that a busy queue
        never holds up the hosts the loop reads."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            if not self._watched:
                rest = None if end is None else max(end - time.monotonic(), 0.0)
                return self._queue.get(timeout=rest)
            left = TICK if end is None else min(end - time.monotonic(), TICK)
            self._poll(max(left, 0.0))
            self.tick()
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                if left <= 0:
                    raise

    def _poll(self, timeout: float) -> None:
        """Read what the watched fds have, waiting up to ``timeout`` seconds for it
        unless an event is there already."""
        poller, wake = self._poller, self._wake
        if poller is None or wake is None:  # (closed)
            return
        self._polling = True
        try:
            ready = poller.poll(0 if not self._queue.empty() else timeout * 1000)
        finally:
            self._polling = False
        for fd, _ in ready:
            if fd == wake[0]:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 4096)
                continue
            callback = self._watched.get(fd)
            if callback is not None:  # (not unwatched by an earlier one of this wake-up)
                callback(fd)

    def close(self) -> None:
        """Close the wake-up pipe (the loop has ended)."""
        if self._wake is not None:
            for end in self._wake:
                os.close(end)
            self._wake, self._poller = None, None
            self._watched.clear()

    def _ring(self) -> None:
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(OSError):  # (full: it rings already)
                os.write(wake[1], b"!")
