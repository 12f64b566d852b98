"""Time, injected. The worker asks a clock for ``now`` and waits through it, so tests
of retry delays and timeouts advance a fake clock instead of sleeping."""

from __future__ import annotations

import queue
import time
from typing import Protocol, TypeVar

T = TypeVar("T", covariant=True)


class Events(Protocol[T]):
    """What a clock waits on: a queue, or the worker's inbox (which reads file
    descriptors while it waits)."""

    def get(self, timeout: float | None = None) -> T:
        """The next item, or :class:`queue.Empty` after ``timeout`` seconds."""


class Clock(Protocol):
    def now(self) -> float:
        """UTC seconds since the epoch."""

    def wait(self, events: Events[T], timeout: float | None) -> T | None:
        """The next item of ``events``, or None once ``timeout`` seconds have passed."""


class SystemClock:
    #: (``time.time`` itself: the worker asks several times an attempt)
    now = staticmethod(time.time)

    def wait(self, events: Events[T], timeout: float | None) -> T | None:
        try:
            return events.get(timeout=None if timeout is None else max(0.0, timeout))
        except queue.Empty:
            return None


class FakeClock:
    """A clock that only moves when told to, or when the worker waits with nothing to
    do: then it jumps straight to the end of the wait (after a short real pause that lets
    running threads report first)."""

    def __init__(self, start: float = 1_800_000_000.0, idle: float = 0.02) -> None:
        self.t = start
        self._idle = idle

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def wait(self, events: Events[T], timeout: float | None) -> T | None:
        try:
            return events.get(timeout=self._idle)
        except queue.Empty:
            if timeout is not None:
                self.t += max(0.0, timeout)
            return None
