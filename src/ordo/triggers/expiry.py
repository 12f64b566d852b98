"""Automatic expiry: ``ordo server`` applies the retention (``retention.days``,
``retention.dev_days``) by itself every ``retention.every`` days, as ``ordo gc`` does
(saved executions are never expired), and logs what it deleted.

Only the holder of the store's ``retention`` lease applies it, so with many servers on
one store one of them does. When it last did is kept in the store (the ``schedules``
row of the empty flow's ``retention`` trigger, a key no flow can have), so a restart
does not sweep again before it is due. Time is passed in (``clock``) for tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from msgspec import Struct, field

from ordo.store import Store
from ordo.store.records import Swept

logger = logging.getLogger(__name__)

LEASE = "retention"
_KEY = ("", "", "retention")  # where the last sweep's time is kept
DAY = 86_400.0


class Expired(Struct):
    """What one sweep deleted."""

    executions: int = 0
    dev: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    events: int = 0
    oldest: float | None = None
    newest: float | None = None

    def add(self, swept: Swept) -> None:
        self.executions += swept.executions
        self.dev += swept.executions if swept.dev else 0
        for table, n in swept.rows.items():
            self.rows[table] = self.rows.get(table, 0) + n
        if swept.oldest is not None:
            self.oldest = min(self.oldest or swept.oldest, swept.oldest)
        if swept.newest is not None:
            self.newest = max(self.newest or swept.newest, swept.newest)


class Expiry:
    """:meth:`tick` sweeps when this server holds the lease and the last sweep (by any
    server) is ``every_days`` old; ``every_days`` 0 never sweeps."""

    def __init__(
        self,
        store: Store,
        holder: str,
        days: float,
        dev_days: float,
        every_days: float,
        *,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = 120.0,
        batch: int = 500,
    ) -> None:
        self.store = store
        self.holder = holder
        self.days = days
        self.dev_days = dev_days
        self.every = every_days * DAY
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.batch = batch

    def tick(self) -> Expired | None:
        """One look: what was deleted, or None when no sweep was due here."""
        if self.every <= 0:
            return None
        now = self.clock()
        if not self.store.take_lease(LEASE, self.holder, now, self.lease_seconds):
            return None
        last = self.store.schedule_checked(*_KEY)
        if last is not None and now - last < self.every:
            return None
        expired = self.sweep(now)
        self.store.set_schedule_checked(*_KEY, now)
        return expired

    def sweep(self, now: float) -> Expired:
        expired = Expired()
        for swept in self.store.collect_garbage(
            now - self.days * DAY, now - self.dev_days * DAY, batch=self.batch
        ):
            expired.add(swept)
        expired.events = self.store.collect_events(now - self.days * DAY, batch=self.batch)
        if expired.executions or expired.events:
            self.store.reclaim_space()
        _log(expired, self.days, self.dev_days)
        return expired

    def stop(self) -> None:
        self.store.drop_lease(LEASE, self.holder)


def _log(expired: Expired, days: float, dev_days: float) -> None:
    if not expired.executions and not expired.events:
        logger.info(
            "retention (%g days, dev %g): nothing to delete",
            days,
            dev_days,
            extra={"event": "retention"},
        )
        return
    rows = ", ".join(f"{table} {n}" for table, n in expired.rows.items() if n)
    logger.info(
        "retention (%g days, dev %g): deleted %s (%d dev), %s and their rows (%s)",
        days,
        dev_days,
        _count(expired.executions, "execution"),
        expired.dev,
        _count(expired.events, "event"),
        rows or "none",
        extra={"event": "retention", "executions": expired.executions},
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
