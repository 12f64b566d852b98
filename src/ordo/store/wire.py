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
from typing import Any, NamedTuple

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


class _Sent(NamedTuple):
    """One thing a batch sends: a statement run (``run``), prepared first
    (``prepare``), or a dropped prepared name deallocated (``deallocate``)."""

    kind: str
    key: _Key | None
    name: bytes | None
    values: Any = None
    formats: Any = None


def _unknown(result: pq.abc.PGresult) -> bool:
    """The error says the prepared statement run does not exist on the server."""
    return result.error_field(pq.DiagnosticField.SQLSTATE) == b"26000"


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
        self._stale: list[bytes] = []  # prepared names dropped, deallocated at the batch's end
        self._poll = select.poll()
        self._poll.register(self.pg.socket, select.POLLIN)

    def run(self, batch: Sequence[Statement]) -> list[Result]:
        """Send ``batch`` (in a transaction, or each statement on its own), then read
        each statement's result. The first statement that fails raises its psycopg
        error; those after it were not run. Parameters psycopg cannot adapt raise
        before anything is sent (or noted); a batch not read to its end (the connection
        broke, a signal's exception) closes the connection: its answers would go to the
        next."""
        adapted = [self._adapt(params) for _, params in batch]
        sends: list[_Sent] = []  # for each thing sent: what it is, and its statement
        for (sql, _), (values, types, formats) in zip(batch, adapted, strict=True):
            key = (sql, types)
            name, prepare = self._name(key)
            if prepare:
                sends.append(_Sent("prepare", key, name))
            sends.append(_Sent("run", key, name, values, formats))
        stale, self._stale = self._stale, []
        sends.extend(_Sent("deallocate", None, name) for name in stale)
        pg = self.pg
        read = False
        try:
            pg.enter_pipeline_mode()
            for one in sends:
                if one.kind == "run":
                    assert one.key is not None
                    sql, types = one.key
                    if one.name is None:
                        pg.send_query_params(
                            sql, one.values, param_types=types, param_formats=one.formats
                        )
                    else:
                        pg.send_query_prepared(one.name, one.values, param_formats=one.formats)
                elif one.kind == "prepare":
                    assert one.key is not None and one.name is not None
                    pg.send_prepare(one.name, one.key[0], param_types=one.key[1])
                else:
                    pg.send_query_params(b"DEALLOCATE " + (one.name or b""), None)
            pg.pipeline_sync()
            groups = self._communicate()
            pg.exit_pipeline_mode()
            read = True
        finally:
            if not read:
                self.conn.close()
        return self._results(sends, groups)

    def _adapt(self, params: Sequence[Any]) -> tuple[Any, tuple[int, ...], Any]:
        """A statement's parameters as psycopg sends them: values, types, formats."""
        if not params:
            return None, (), None
        tx = self._tx
        values = tx.dump_sequence(params, [_AUTO] * len(params))
        return values, tuple(tx.types or ()), tx.formats

    def _name(self, key: _Key) -> tuple[bytes | None, bool]:
        """The statement's prepared name (None: not prepared), and whether to prepare
        it now (its fifth run)."""
        name = self._prepared.get(key)
        if name is not None:
            self._prepared.move_to_end(key)
            return name, False
        seen = self._seen.pop(key, 0) + 1
        if seen < PREPARE_AT:
            self._seen[key] = seen
            if len(self._seen) > _SEEN_MAX:
                self._seen.popitem(last=False)
            return None, False
        self._names += 1
        name = self._prepared[key] = b"_ordo_%d" % self._names
        if len(self._prepared) > PREPARED_MAX:
            self._stale.append(self._prepared.popitem(last=False)[1])
        return name, True

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
                if results:  # (a statement's results not ended: out of step)
                    raise psycopg.OperationalError("unexpected results before a sync")
                return groups
            else:
                results.append(result)

    def _wait(self, events: int) -> None:
        self._poll.modify(self.pg.socket, events)
        self._poll.poll()

    def _results(self, sends: list[_Sent], groups: list[list[pq.abc.PGresult]]) -> list[Result]:
        found: list[Result] = []
        failure: psycopg.Error | None = None
        for one, results in zip(sends, groups, strict=True):
            result = results[-1] if results else None
            status = result.status if result is not None else _EMPTY_QUERY
            if one.kind == "deallocate":
                if status == _PIPELINE_ABORTED and one.name is not None:
                    self._stale.append(one.name)  # (not run: the next batch's)
                continue  # (its own error, if any, says nothing of the batch)
            if status in (_FATAL_ERROR, _PIPELINE_ABORTED):
                if one.name is not None and (
                    one.kind == "prepare" or (result is not None and _unknown(result))
                ):
                    assert one.key is not None
                    self._prepared.pop(one.key, None)  # not prepared after all
                if failure is None and status == _FATAL_ERROR:
                    assert result is not None
                    failure = errors.error_from_result(result, encoding=self._encoding)
                continue
            if one.kind == "run":
                assert one.key is not None
                found.append(self._result(one.key[0], result))
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
