"""Stop in-process work (an SQL query, an HTTP request) when its attempt times out or is
cancelled: a small thread calls ``interrupt`` once, at the deadline or on ``ctx.cancel``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ordo.model import Outcome, State
from ordo.runners.base import RunContext


def timeout_error(timeout: float | None) -> str:
    """The one wording of a timeout: ``timed out after 2.0s``."""
    return f"timed out after {float(timeout or 0)}s"


def stopped_outcome(why: str | None, ctx: RunContext) -> Outcome | None:
    """The outcome for an attempt stopped for ``why`` (``timeout`` or ``killed``)."""
    if why == "timeout":
        return Outcome(State.FAILED, reason="timeout", error=timeout_error(ctx.timeout))
    if why == "killed":
        return Outcome(State.KILLED, reason="killed", error="killed on request")
    return None


class Watch:
    """Calls ``interrupt()`` at most once, when ``ctx.timeout`` passes or ``ctx.cancel``
    is set, until :meth:`stop`. Use as a context manager around the blocking call."""

    def __init__(self, ctx: RunContext, interrupt: Callable[[], object]) -> None:
        self.ctx = ctx
        self.why: str | None = None
        self._interrupt = interrupt
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ordo-watch", daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch(self) -> None:
        timeout = self.ctx.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.wait(0.02):
            if self.ctx.cancel.is_set():
                self.why = "killed"
            elif deadline is not None and time.monotonic() >= deadline:
                self.why = "timeout"
            else:
                continue
            self._interrupt()
            return

    def outcome(self) -> Outcome | None:
        """The timeout / killed outcome when the watch fired, else None."""
        return stopped_outcome(self.why, self.ctx)

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
