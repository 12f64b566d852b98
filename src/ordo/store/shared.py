"""What the concerns of the store still built by inheritance share (the state core:
transitions, readiness, outcomes, limits, recovery, and the worker's and executions'
side in :mod:`ordo.store.sql`): the Db and the concerns they read through. Goes once
they are objects of their own."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ordo.store.db import Db, Row
from ordo.store.flows import Flows
from ordo.store.reads import Reads


class Shared:
    """The Db, the flows and the reads, and the Db's statements by their old names."""

    db: Db
    flows: Flows
    reads: Reads

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute(sql, params)

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    def _insert(self, sql: str, params: Sequence[Any]) -> int:
        return self.db.insert(sql, params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self.db.one(sql, params)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.db.all(sql, params)

    def _values(self, rows: Sequence[Sequence[Any]], types: Sequence[str]) -> tuple[str, list[Any]]:
        return self.db.values(rows, types)

    def _ids(self, values: Sequence[int]) -> tuple[str, list[Any]]:
        return self.db.ids(values)

    def _lock(self, name: str) -> None:
        self.db.lock(name)

    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction; nested uses join the outer one."""
        return self.db.transaction()
