"""The log buffer: attempts' lines, timestamped, masked and capped on their own threads,
held here until the loop writes them in its next step (one statement for all)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ordo.clock import Clock
from ordo.masking import LineMask
from ordo.store.records import Claim, NewLog


class LogBuffer:
    """Lines waiting to be written, from every attempt of the worker. ``wake`` is called
    when ``batch_lines`` wait, so that a chatty task is written early."""

    def __init__(self, batch_lines: int, wake: Callable[[], None]) -> None:
        self.batch_lines = batch_lines
        self.wake = wake
        self._lines: list[NewLog] = []
        self._lock = threading.Lock()

    def add(self, line: NewLog) -> None:
        with self._lock:
            self._lines.append(line)
            full = len(self._lines) == self.batch_lines
        if full:
            self.wake()

    def pending(self) -> list[NewLog]:
        """The lines to write now; :meth:`written` forgets them once they are."""
        with self._lock:
            return list(self._lines)

    def written(self, count: int) -> None:
        with self._lock:
            del self._lines[:count]


class AttemptLog:
    """The log sink of one attempt: timestamps lines, buffers them for the loop, masks
    secrets (:meth:`hide`; a line that may go on with a secret's rest is held back up to
    :data:`HOLD` seconds) and stops keeping output past ``max_bytes`` with one marker.
    Fed by the attempt's threads, released by the loop."""

    HOLD = 1.0

    def __init__(self, claim: Claim, buffer: LogBuffer, clock: Clock, max_bytes: int) -> None:
        self.claim = claim
        self.buffer = buffer
        self.clock = clock
        self.max_bytes = max_bytes
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
                self._held_since = self.clock.now()

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
        if self.truncated:
            self.dropped_bytes += len(line) + 1
            self.dropped_lines += 1
            return
        self.size += len(line) + 1
        if self.size > self.max_bytes:
            self.truncated = True
            self.dropped_bytes, self.dropped_lines = len(line) + 1, 1
            stream = "stderr"
            line = f"[ordo: output truncated after {self.max_bytes} bytes; the rest was not kept]"
        self._append(stream, line)

    def _append(self, stream: str, line: str) -> None:
        claim = self.claim
        self.buffer.add(
            NewLog(claim.execution_id, claim.attempt_id, self.clock.now(), stream, line)
        )
