"""Statements to one PostgreSQL connection in batches: each batch in one round trip.

A worker's step sends a few statements at a time (a transaction's BEGIN with its first
statement, the writes no one reads with the next one or the COMMIT). psycopg's pipeline
does that, but polls the socket after each statement it queues and builds a cursor for
each: on a chain hop (5 statements in 3 round trips) that was a sixth of the worker's
CPU. Here a batch is sent whole, then its results are read once: psycopg's libpq layer
(:mod:`psycopg.pq`) in pipeline mode, its adapters (:class:`psycopg.adapt.Transformer`)
to pass parameters and read rows as psycopg's cursors do, and its errors
(:func:`psycopg.errors.error_from_result`). A statement sent a fifth time is prepared
(parsed and, on a worker's connection, planned once: see
:meth:`~ordo.store.postgres.PostgresDb.plan_once`), as psycopg does. Preparing each at
its second run made PostgreSQL W2 half as fast: statements whose text varies with their
rows' count (``IN (?, ?)``, multi-row ``VALUES``) filled the cache and were deallocated
again and again.
"""

from __future__ import annotations

import select
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer

#: A statement is prepared when it is sent this many times (psycopg's
#: ``prepare_threshold``); at most ``PREPARED_MAX`` stay prepared on the connection (the
#: least recently used is deallocated), as psycopg's ``prepared_max``.
PREPARE_AT = 5
PREPARED_MAX = 100
_SEEN_MAX = 1000  # statements not prepared yet, remembered with their count

_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_EMPTY_QUERY = pq.ExecStatus.EMPTY_QUERY
_PIPELINE_SYNC = pq.ExecStatus.PIPELINE_SYNC
_PIPELINE_ABORTED = pq.ExecStatus.PIPELINE_ABORTED
_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR


class Result:
    """One statement's rows (read by index or name, as ``row_class`` makes them) and
    how many rows it changed: what the store reads of a psycopg cursor."""

    __slots__ = ("_at", "_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self._at = 0
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rows = self._rows[self._at :]
        self._at = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


#: a statement (``$1``-style placeholders) and its parameters
Statement = tuple[bytes, Sequence[Any]]
_Key = tuple[bytes, tuple[int, ...]]  # a statement and its parameters' types
_AUTO = PyFormat.AUTO


class Wire:
    """Batches of statements to ``conn`` (autocommit; psycopg made it non-blocking),
    each in one round trip; rows made by ``row_class(field names)``."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        row_class: Callable[[tuple[bytes | None, ...]], Callable[[Sequence[Any]], Any]],
    ) -> None:
        self.conn = conn
        self.pg = conn.pgconn
        self.row_class = row_class
        self._tx = Transformer(conn)
        self._encoding = conn.info.encoding
        self._prepared: OrderedDict[_Key, bytes] = OrderedDict()
        self._seen: OrderedDict[_Key, int] = OrderedDict()
        self._names = 0
        self._shapes: dict[bytes, Callable[[Sequence[Any]], Any]] = {}  # rows' class
        self._stale: list[bytes] = []  # prepared names to deallocate with the next batch
        self._poll = select.poll()
        self._poll.register(self.pg.socket, select.POLLIN)

    def run(self, batch: Sequence[Statement]) -> list[Result]:
        """Send ``batch`` (in a transaction, or each statement on its own), then read
        each statement's result. The first statement that fails raises its psycopg
        error; those after it were not run. Parameters psycopg cannot adapt raise
        before anything is sent; a batch not read to its end (the connection broke, a
        signal's exception) closes the connection: its answers would go to the next."""
        bound = [self._bind(sql, params) for sql, params in batch]
        stale, self._stale = self._stale, []
        pg = self.pg
        sent: list[_Key | None] = []  # for each statement sent: a prepare's key, or None
        read = False
        try:
            pg.enter_pipeline_mode()
            for sql, name, prepare, values, types, formats in bound:
                if prepare:
                    assert name is not None
                    pg.send_prepare(name, sql, param_types=types)
                    sent.append((sql, types))
                if name is None:
                    pg.send_query_params(sql, values, param_types=types, param_formats=formats)
                else:
                    pg.send_query_prepared(name, values, param_formats=formats)
                sent.append(None)
            for name in stale:
                pg.send_query_params(b"DEALLOCATE " + name, None)
                sent.append(None)
            pg.pipeline_sync()
            groups = self._communicate()
            pg.exit_pipeline_mode()
            read = True
        finally:
            if not read:
                self.conn.close()
        return self._results(batch, sent, groups)

    def _bind(
        self, sql: bytes, params: Sequence[Any]
    ) -> tuple[bytes, bytes | None, bool, Sequence[Any] | None, tuple[int, ...], Any]:
        """A statement's parameters adapted, and its prepared name: ``(sql, name or
        None, whether to prepare it now, values, types, formats)``."""
        if params:
            tx = self._tx
            values: Sequence[Any] | None = tx.dump_sequence(params, [_AUTO] * len(params))
            types, formats = tuple(tx.types or ()), tx.formats
        else:
            values, types, formats = None, (), None
        key = (sql, types)
        name = self._prepared.get(key)
        if name is not None:
            self._prepared.move_to_end(key)
            return sql, name, False, values, types, formats
        seen = self._seen.pop(key, 0) + 1
        if seen < PREPARE_AT:
            self._seen[key] = seen
            if len(self._seen) > _SEEN_MAX:
                self._seen.popitem(last=False)
            return sql, None, False, values, types, formats
        self._names += 1
        name = self._prepared[key] = b"_ordo_%d" % self._names
        if len(self._prepared) > PREPARED_MAX:
            self._stale.append(self._prepared.popitem(last=False)[1])
        return sql, name, True, values, types, formats

    def _communicate(self) -> list[list[pq.abc.PGresult]]:
        """Send what is queued, then read results up to the batch's sync: one list per
        statement sent (a prepare's included)."""
        pg = self.pg
        while pg.flush():  # more to send: wait until we can, reading what comes meanwhile
            self._wait(select.POLLIN | select.POLLOUT)
            pg.consume_input()
        groups: list[list[pq.abc.PGresult]] = []
        results: list[pq.abc.PGresult] = []
        while True:
            while pg.is_busy():
                self._wait(select.POLLIN)
                pg.consume_input()
            result = pg.get_result()
            if result is None:  # a statement's results are all in
                groups.append(results)
                results = []
            elif result.status == _PIPELINE_SYNC:
                return groups
            else:
                results.append(result)

    def _wait(self, events: int) -> None:
        self._poll.modify(self.pg.socket, events)
        self._poll.poll()

    def _results(
        self,
        batch: Sequence[Statement],
        sent: list[_Key | None],
        groups: list[list[pq.abc.PGresult]],
    ) -> list[Result]:
        found: list[Result] = []
        failure: psycopg.Error | None = None
        for key, results in zip(sent, groups, strict=True):
            result = results[-1] if results else None
            status = result.status if result is not None else _EMPTY_QUERY
            if status in (_FATAL_ERROR, _PIPELINE_ABORTED):
                if key is not None:  # not prepared after all
                    self._prepared.pop(key, None)
                if failure is None and status == _FATAL_ERROR:
                    assert result is not None
                    failure = errors.error_from_result(result, encoding=self._encoding)
                continue
            if key is None and len(found) < len(batch):  # (not a DEALLOCATE's)
                found.append(self._result(batch[len(found)][0], result))
        if failure is not None:
            raise failure
        return found

    def _result(self, sql: bytes, result: pq.abc.PGresult | None) -> Result:
        if result is None or result.status != _TUPLES_OK:
            count = result.command_tuples if result is not None else None
            return Result([], -1 if count is None else count)
        tx = self._tx
        tx.set_pgresult(result)
        make = self._shapes.get(sql)
        if make is None:  # (a statement's columns are the same each time it runs)
            if len(self._shapes) >= _SEEN_MAX:
                self._shapes.clear()
            fields = tuple(result.fname(i) for i in range(result.nfields))
            make = self._shapes[sql] = self.row_class(fields)
        rows = tx.load_rows(0, result.ntuples, make)
        return Result(rows, result.ntuples)
