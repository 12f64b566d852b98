"""Server-Sent Event streams (log following, the UI's live pages) that cost nothing
while idle: async generators waiting on ``asyncio.sleep`` (no thread held between
looks), each look a short borrow of a pooled store connection, ended when the client
goes (Starlette cancels the generator), and at most :data:`PER_TOKEN` open per token.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, Iterator

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ordo.errors import OrdoError

PER_TOKEN = 20  # open streams of one token (API token or UI session's token)
FIRST_PAUSE = 0.1  # seconds between looks right after something happened
LONGEST_PAUSE = 1.0  # ... growing to this while nothing does


class TooManyStreams(OrdoError):
    """A token has :data:`PER_TOKEN` streams open already: 429 with Retry-After."""


class Streams:
    """How many streams each token has open."""

    def __init__(self, per_token: int = PER_TOKEN) -> None:
        self.per_token = per_token
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def open(self, token: str) -> Ticket:
        with self._lock:
            if self._open.get(token, 0) >= self.per_token:
                raise TooManyStreams(
                    f"token {token!r} has {self.per_token} streams open already; "
                    "close one (or wait) and try again"
                )
            self._open[token] = self._open.get(token, 0) + 1
        return Ticket(self, token)

    def close(self, token: str) -> None:
        with self._lock:
            left = self._open.get(token, 0) - 1
            if left > 0:
                self._open[token] = left
            else:
                self._open.pop(token, None)

    def count(self, token: str) -> int:
        with self._lock:
            return self._open.get(token, 0)


class Ticket:
    """One open stream of a token; :meth:`close` once (later calls do nothing)."""

    def __init__(self, streams: Streams, token: str) -> None:
        self._streams: Streams | None = streams
        self.token = token

    def close(self) -> None:
        streams, self._streams = self._streams, None
        if streams is not None:
            streams.close(self.token)


class EventStream(StreamingResponse):
    """``text/event-stream`` whose :class:`Ticket` is given back when the answer ends,
    however it ends (finished, client gone, error)."""

    def __init__(self, content: AsyncIterable[str], ticket: Ticket) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.ticket = ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ticket.close()


def event(name: str, data: str, event_id: int | None = None) -> str:
    """One SSE event. ``data`` is sent as one ``data:`` line per line of it, so a CR or
    LF inside it (a log line's ``\\r``, a forged ``event:``) cannot end the event or
    start another: the receiver joins the lines again with LF."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return head + f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def pauses() -> Iterator[float]:
    """Pauses between looks while nothing happens: short at first, then longer."""
    pause = FIRST_PAUSE
    while True:
        yield pause
        pause = min(pause * 1.5, LONGEST_PAUSE)
