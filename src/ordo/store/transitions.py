"""The one path for every change of state of an execution or a task run.

:meth:`Transitions.transition` takes a batch of changes, checks each against the one
table in :mod:`ordo.model` (:data:`~ordo.model.EDGES`: work, marks and a replay's
copies), applies them with one conditional statement (``... WHERE state = old``, so a
change another process made first is not overwritten) and notes their history, which
:meth:`Transitions._write_history` writes in one statement just before the transaction
commits (a hook on the Db: :meth:`~ordo.store.db.Db.on_commit`). A change the table
forbids is a bug: it raises :class:`~ordo.errors.IllegalTransition` naming the run, the
states and the caller, and the transaction rolls back.

No other module of the store writes a state of an execution or a task run, or a row of
``state_history`` (``tests/store/test_one_path.py`` reads their SQL to make sure). Rows
are created CREATED, their history noted by :meth:`Transitions.created`. A task run's
routine moves (its first claim, its end by an attempt that succeeded) are written as no
row: the attempt holds them, and reading the history puts them back
(:mod:`ordo.store.history`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from msgspec import Struct

from ordo.errors import IllegalTransition, NotFound
from ordo.model import By, State, can_transition
from ordo.store.db import Db, Row, parts
from ordo.store.history import ROUTINE

Kind = Literal["execution", "task run"]

# -- the only SQL that writes a state or its history -----------------------------------
ATTEMPT_TYPES = (
    "BIGINT",
    "BIGINT",
    "BIGINT",
    "TEXT",
    "TEXT",
    "DOUBLE PRECISION",
    "DOUBLE PRECISION",
    "DOUBLE PRECISION",
)
#: Attempts that ended, rows ``(attempt_id, exit_code, cpu_seconds, peak_rss_kb)``,
#: then, unless they are all plain successes, ``(state, reason, error, task_reason)``
#: (``task_reason``: the reason the task run of one that ended well ends with): see
#: :func:`_finish`.
FINISH_ATTEMPTS = """
UPDATE attempts
SET state = {state}, ended_at = ?, exit_code = CAST(v.column2 AS INTEGER), reason = {reason},
    error = {error}, cpu_seconds = CAST(v.column3 AS DOUBLE PRECISION),
    peak_rss_kb = CAST(v.column4 AS BIGINT), lease_expires_at = NULL
FROM {values}
WHERE attempts.id = v.column1 AND attempts.state = 'RUNNING'
RETURNING attempts.id AS attempt_id, attempts.task_run_id AS task_run_id{more}
"""
INSERT_ATTEMPTS = """
INSERT INTO attempts
    (task_run_id, execution_id, number, state, worker_id, lease_expires_at, started_at,
     launched_at)
SELECT * FROM {values}
RETURNING id, task_run_id, number
"""
#: the same with the ids the claim reserved (PostgreSQL): nothing to wait for
_INSERT_ATTEMPTS_WITH_IDS = """
INSERT INTO attempts
    (id, task_run_id, execution_id, number, state, worker_id, lease_expires_at, started_at,
     launched_at)
SELECT * FROM {values}
RETURNING id, task_run_id, number
"""
SUCCESS_TYPES = ("BIGINT", "BIGINT", "DOUBLE PRECISION", "BIGINT")
#: the columns :data:`FINISH_ATTEMPTS` reads besides :data:`SUCCESS_TYPES`' when the
#: attempts are not all plain successes: their state, reason and error, and the reason
#: the task run of one that ended well ends with
ENDED_TYPES = ("TEXT", "TEXT", "TEXT", "TEXT")

_SET_EXECUTION = """
UPDATE executions SET state = ?, reason = coalesce(?, reason),
    started_at = CASE WHEN ? = 'RUNNING' THEN coalesce(started_at, ?) ELSE started_at END
WHERE id = ? AND state = ?
"""
#: a mark sets the reason it gives, even none (an execution marked SUCCESS has none)
_SET_EXECUTION_MARKED = "UPDATE executions SET state = ?, reason = ? WHERE id = ? AND state = ?"
_SET_TASK_RUN = """
UPDATE task_runs SET state = ?, reason = ?, ended_at = ? WHERE id = ? AND state = ?
RETURNING id AS task_run_id, fork_of
"""
_SET_TASK_RUNS = """
UPDATE task_runs
SET state = v.column2, reason = v.column3, ended_at = CAST(v.column4 AS DOUBLE PRECISION)
FROM {values}
WHERE task_runs.id = v.column1 AND task_runs.state = v.column5
RETURNING task_runs.id AS task_run_id, task_runs.fork_of AS fork_of
"""
_TASK_RUN_TYPES = ("BIGINT", "TEXT", "TEXT", "DOUBLE PRECISION", "TEXT")
#: The task runs of attempts finished (``f``) move RUNNING -> SUCCESS (``u``), or to
#: the state their attempt ended in, with their reason (``{state}``, ``{reason}``).
_SUCCESS_MOVES = """
WITH f AS ({finish}),
u AS (
    UPDATE task_runs SET state = {state}, reason = {reason}, ended_at = ?
    FROM f
    WHERE task_runs.id = f.task_run_id AND task_runs.state = 'RUNNING'
    RETURNING task_runs.id, task_runs.execution_id, task_runs.fork_of)"""
#: PostgreSQL, in one statement: attempts ended well (``{finish}``) and their task
#: runs RUNNING -> SUCCESS (or WARNING, SKIPPED); the pending count of each execution
#: whose task runs (not for_each items) moved, less those, the rows of every execution
#: whose task runs moved locked in id order first (as one at a time in id order would:
#: a claim sent with this statement then locks task runs after them, for_each items'
#: included); and whatever
#: ``{release}`` (common table expressions after those, whose ``readied`` returns task
#: runs) does with them: it must not update a task run ``u`` moves (PostgreSQL would
#: drop one of the two updates), and a dependent never runs while its upstream does.
#: One row of arrays: the attempts recorded, the task runs moved (with the for_each
#: task run of each), the executions counted (with their ``pending`` after), the task
#: runs ``readied`` returned (one row, not one per attempt: joining the attempts to
#: their task runs made the server compare every pair, as it cannot know their number).
_SUCCEEDED = (
    _SUCCESS_MOVES
    + """,
n AS (SELECT execution_id, count(*) AS ended FROM u WHERE fork_of IS NULL GROUP BY execution_id),
l AS (SELECT id FROM executions WHERE id IN (SELECT execution_id FROM u) ORDER BY id FOR UPDATE),
p AS (
    UPDATE executions SET pending = executions.pending - n.ended
    FROM n JOIN l ON l.id = n.execution_id
    WHERE executions.id = n.execution_id
    RETURNING executions.id, executions.pending),
{release}
SELECT (SELECT array_agg(attempt_id) FROM f) AS recorded, m.moved, m.forks, c.counted,
       c.pending, (SELECT array_agg(task_run_id) FROM readied) AS readied
FROM (SELECT array_agg(id) AS moved, array_agg(fork_of) AS forks FROM u) AS m,
     (SELECT array_agg(id) AS counted, array_agg(pending) AS pending FROM p) AS c
"""
)
#: Attempts started: each task run's count and last attempt, and CREATED or RESTARTED ->
#: RUNNING for a first attempt (a retry's task run is RUNNING already), in one statement.
_CLAIMED = """
UPDATE task_runs
SET state = CASE WHEN task_runs.state IN ('CREATED', 'RESTARTED') THEN 'RUNNING'
                 ELSE task_runs.state END,
    attempts = CAST(v.column2 AS INTEGER), last_attempt_id = CAST(v.column3 AS BIGINT),
    started_at = coalesce(task_runs.started_at, ?)
FROM {values}
WHERE task_runs.id = v.column1 AND task_runs.state IN ('CREATED', 'RESTARTED', 'RUNNING')
"""
_CLAIMED_TYPES = ("BIGINT", "BIGINT", "BIGINT")
#: PostgreSQL: the attempts inserted (``{insert}``) and :data:`_CLAIMED` in one statement
_STARTED = """
WITH a AS ({insert}),
u AS (
    UPDATE task_runs
    SET state = CASE WHEN task_runs.state IN ('CREATED', 'RESTARTED') THEN 'RUNNING'
                     ELSE task_runs.state END,
        attempts = a.number, last_attempt_id = a.id,
        started_at = coalesce(task_runs.started_at, ?)
    FROM a
    WHERE task_runs.id = a.task_run_id
      AND task_runs.state IN ('CREATED', 'RESTARTED', 'RUNNING')
    RETURNING task_runs.id)
SELECT a.id, a.task_run_id FROM a
"""
_INSERT_HISTORY = """
INSERT INTO state_history (execution_id, task_run_id, from_state, to_state, at, reason)
VALUES (?, ?, ?, ?, ?, ?)
"""
_EXECUTION_STATE = "SELECT state FROM executions WHERE id = ?"
_TASK_RUN_STATE = "SELECT state, task_id, allow_failure, fork_of FROM task_runs WHERE id = ?"
_TASK_RUNS_STATES = (
    "SELECT id, state, task_id, allow_failure, fork_of FROM task_runs WHERE id {ids}"
)


#: Task runs that have not started: what skips and kills of unstarted work change.
UNSTARTED = frozenset({State.CREATED, State.RESTARTED})


class Before(Struct, frozen=True):
    """A task run as it was before a change (``known``: its state only)."""

    state: State
    task_id: str = ""
    allow_failure: bool = False
    fork_of: int | None = None


class Change(Struct, frozen=True):
    """``old -> new`` of one execution (``run_id`` None) or one task run."""

    execution_id: int
    run_id: int | None
    old: State
    new: State
    reason: str | None = None


class Succeeded(Struct, frozen=True):
    """What :meth:`Transitions.succeeded` did: the attempts recorded (the others had
    ended: lost), the task runs moved with the for_each task run each is an item of,
    the pending count after of each execution counted (none: the caller counts), and
    the task runs its release made ready (None: the caller releases)."""

    recorded: set[int]
    moved: dict[int, int | None]
    pending: dict[int, int]
    readied: list[int] | None


def _succeeded(rows: Sequence[Row]) -> Succeeded:
    """:data:`_SUCCEEDED`'s one row: arrays (each pair of arrays aggregated together,
    so that they line up), NULL when empty."""
    (r,) = rows
    moved = dict(zip(r["moved"] or (), r["forks"] or (), strict=True))
    pending = dict(zip(r["counted"] or (), r["pending"] or (), strict=True))
    return Succeeded(set(r["recorded"] or ()), moved, pending, list(r["readied"] or ()))


class Transitions:
    """The transition function and the history it writes; the store's other concerns
    change states through it."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self._transitions: list[tuple[Any, ...]] = []  # state_history rows, written at commit
        db.on_commit(self._write_history)
        db.on_rollback(self._forget_history)

    # -- the one function --------------------------------------------------------------
    def transition(
        self, changes: Sequence[Change], now: float, by: By = By.WORK, *, routine: bool = False
    ) -> dict[int, int | None]:
        """Apply ``changes`` (all of executions, or all of task runs), each only if its
        row is still in its ``old`` state; the ids changed (of executions, or of task
        runs with the for_each task run each is an item of). Raises
        :class:`IllegalTransition` for an edge the table does not give ``by``, before
        anything is written. ``routine``: task runs' RUNNING -> SUCCESS by attempts that
        ended SUCCESS without reason or error, whose history the attempts hold (no row
        is written)."""
        if not changes:
            return {}
        for change in changes:
            if not can_transition(change.old, change.new, by):
                raise _illegal(change, by)
            if routine and not _routine(change, by):
                raise _illegal(change, by, "not a routine move")
        if changes[0].run_id is None:
            done = self._set_executions(changes, now, by)
        else:
            done = self._set_task_runs(changes, now)
        if routine:
            return done
        self._remember(
            [c for c in changes if (c.execution_id if c.run_id is None else c.run_id) in done],
            now,
        )
        return done

    def _remember(self, changes: Iterable[Change], now: float) -> None:
        """Changes made: their history, written when the transaction commits."""
        self._transitions.extend(_rows(changes, now))

    def _set_executions(
        self, changes: Sequence[Change], now: float, by: By
    ) -> dict[int, int | None]:
        done: dict[int, int | None] = {}
        for c in changes:  # executions change one at a time (kills, ends: few per batch)
            if by is By.MARK:
                params: tuple[Any, ...] = (c.new.value, c.reason, c.execution_id, c.old.value)
                cur = self.db.execute(_SET_EXECUTION_MARKED, params)
            else:
                params = (c.new.value, c.reason, c.new.value, now, c.execution_id, c.old.value)
                cur = self.db.execute(_SET_EXECUTION, params)
            if cur.rowcount == 1:
                done[c.execution_id] = None
        return done

    def _set_task_runs(self, changes: Sequence[Change], now: float) -> dict[int, int | None]:
        if len(changes) == 1:
            c = changes[0]
            ended = now if c.new.terminal else None
            params = (c.new.value, c.reason, ended, c.run_id, c.old.value)
            found = self.db.all(_SET_TASK_RUN, params)
            return {int(r["task_run_id"]): r["fork_of"] for r in found}
        rows = [
            (c.run_id, c.new.value, c.reason, now if c.new.terminal else None, c.old.value)
            for c in changes
        ]
        done: dict[int, int | None] = {}
        for part in parts(rows, self.db.rows_at_once(len(_TASK_RUN_TYPES))):
            table, values = self.db.values(part, _TASK_RUN_TYPES)
            found = self.db.all(_SET_TASK_RUNS.format(values=table), values)
            done.update((int(r["task_run_id"]), r["fork_of"]) for r in found)
        return done

    def succeeded(
        self,
        attempts: Sequence[Sequence[Any]],
        changes: Sequence[Change],
        now: float,
        release: str,
    ) -> Callable[[], Succeeded]:
        """Attempts that ended well and ``changes``, their task runs' RUNNING -> SUCCESS
        (or WARNING, or SKIPPED by their run_if), in one statement (PostgreSQL) or a few.
        ``attempts``' rows are ``(attempt_id, exit_code, cpu_seconds, peak_rss_kb)`` when
        all are plain successes (routine moves: the attempts hold their history); else
        they go on with ``(state, reason, error)`` of the attempt and the reason its task
        run ends with (:data:`FINISH_ATTEMPTS`), and the moves that are not routine are
        written to the history. On PostgreSQL the same statement counts the moved task
        runs (for_each items aside) off their executions' pending counts and runs
        ``release`` (:data:`~ordo.store.readiness.RELEASE_CTES`, given ``now``), and it
        goes with the next statement (:meth:`~ordo.store.db.Db.soon`): the function
        returned reads what it did."""
        if not attempts:
            return lambda: Succeeded(set(), {}, {}, None)
        plain = len(attempts[0]) == len(SUCCESS_TYPES)
        for change in changes:
            if not can_transition(change.old, change.new) or change.new not in ENDS_WELL:
                raise _illegal(change, By.WORK, "not a move of an attempt that ended well")
            if plain and not _routine(change, By.WORK):
                raise _illegal(change, By.WORK, "not a routine move")
        types = SUCCESS_TYPES if plain else (*SUCCESS_TYPES, *ENDED_TYPES)
        table, params = self.db.values(attempts, types)
        cte = self.db.writable_ctes
        finish = _finish(table, plain, cte)
        if cte:
            state, reason = ("'SUCCESS'", "NULL") if plain else ("f.state", "f.task_reason")
            moves = _SUCCEEDED.format(finish=finish, release=release, state=state, reason=reason)
            rows = self.db.soon(moves, [now, *params, now, now])
            if plain:
                return lambda: _succeeded(rows())
            at = len(self._transitions)  # (before what is done until it is read: claims)

            def read() -> Succeeded:
                found = _succeeded(rows())
                moved = [c for c in changes if c.run_id in found.moved]
                self._transitions[at:at] = _rows(
                    [c for c in moved if not _routine(c, By.WORK)], now
                )
                return found

            return read
        recorded = {int(r["attempt_id"]) for r in self.db.all(finish, [now, *params])}
        of = dict(zip((int(a[0]) for a in attempts), changes, strict=True))
        ended = [of[a] for a in sorted(recorded)]
        routine = [c for c in ended if _routine(c, By.WORK)]
        moved = self.transition(routine, now, routine=True)
        moved.update(self.transition([c for c in ended if not _routine(c, By.WORK)], now))
        return lambda: Succeeded(recorded, moved, {}, None)

    def finish_attempts(self, attempts: Sequence[Sequence[Any]], now: float) -> set[int]:
        """Attempts ended (rows of :data:`FINISH_ATTEMPTS` with their state, reason and
        error), in one statement (on SQLite, one per part of as many rows as it takes);
        those recorded (the others had ended: lost). Their
        task runs' moves are the caller's."""
        types = (*SUCCESS_TYPES, *ENDED_TYPES)
        recorded: set[int] = set()
        for part in parts(attempts, self.db.rows_at_once(len(types))):
            table, params = self.db.values(part, types)
            finish = _finish(table, plain=False, cte=False)
            recorded.update(int(r["attempt_id"]) for r in self.db.all(finish, [now, *params]))
        return recorded

    def claimed(
        self,
        attempts: Sequence[Sequence[Any]],
        moves: Sequence[Change],
        now: float,
        ids: Sequence[int] | None = None,
    ) -> dict[int, int]:
        """Attempts started: ``attempts`` are rows of :data:`INSERT_ATTEMPTS` (task
        run, execution, number, ...), each task run's count and last attempt set, and
        ``moves`` to RUNNING of those that were waiting (CREATED or RESTARTED; a retry's
        task run is RUNNING already), in one statement (PostgreSQL) or two. A first
        attempt's CREATED -> RUNNING is routine: the attempt holds its history. The
        attempt started for each task run: with the ``ids`` the claim reserved for them
        (PostgreSQL), the statement goes with the commit (:meth:`Db.later`)."""
        if not attempts:
            return {}
        for change in moves:
            if not can_transition(change.old, change.new):
                raise _illegal(change, By.WORK)
        if ids is not None and self.db.writable_ctes:
            rows = [(i, *a) for i, a in zip(ids, attempts, strict=True)]
            table, params = self.db.values(rows, ("BIGINT", *ATTEMPT_TYPES))
            insert = _INSERT_ATTEMPTS_WITH_IDS.format(values=table)
            self.db.later(_STARTED.format(insert=insert), [*params, now])
            started = {int(a[0]): int(i) for i, a in zip(ids, attempts, strict=True)}
        else:
            started = {}
            for part in parts(attempts, self.db.rows_at_once(len(ATTEMPT_TYPES))):
                table, params = self.db.values(part, ATTEMPT_TYPES)
                insert = INSERT_ATTEMPTS.format(values=table)
                if self.db.writable_ctes:
                    found = self.db.all(_STARTED.format(insert=insert), [*params, now])
                else:
                    found = self.db.all(insert, params)
                    rows = [(r["task_run_id"], r["number"], r["id"]) for r in found]
                    table, values = self.db.values(rows, _CLAIMED_TYPES)
                    self.db.execute(_CLAIMED.format(values=table), [now, *values])
                started.update((int(r["task_run_id"]), int(r["id"])) for r in found)
        number = {int(r[0]): int(r[2]) for r in attempts}
        self._transitions.extend(
            (c.execution_id, c.run_id, c.old.value, c.new.value, now, c.reason)
            for c in moves
            if not (c.old is State.CREATED and c.run_id is not None and number[c.run_id] == 1)
        )
        return started

    # -- one change, its current state read first --------------------------------------
    def set_execution_state(
        self, ex_id: int, new: State, now: float, reason: str | None, *, by: By = By.WORK
    ) -> State | None:
        """``-> new`` for an execution; its state before, or None when another process
        changed it first."""
        row = self.db.one(_EXECUTION_STATE, (ex_id,))
        if row is None:
            raise NotFound(f"execution {ex_id} not found")
        old = State(row["state"])
        return old if self.transition([Change(ex_id, None, old, new, reason)], now, by) else None

    def set_task_run_state(
        self,
        tr_id: int,
        ex_id: int,
        new: State,
        now: float,
        reason: str | None,
        *,
        known: State | None = None,
        only_from: frozenset[State] | None = None,
        by: By = By.WORK,
        routine: bool = False,
    ) -> Before | None:
        """``-> new`` for a task run; what it was before, or None when another process
        changed it first, or when it is not in one of the states ``only_from`` names (a
        caller that changes whichever of a set of runs has not ended yet). ``known``
        skips reading the current state when the caller just read it. ``routine``: see
        :meth:`transition`."""
        before = Before(known) if known else self._task_run_before(tr_id)
        if only_from is not None and before.state not in only_from:
            return None
        change = Change(ex_id, tr_id, before.state, new, reason)
        return before if self.transition([change], now, by, routine=routine) else None

    def _task_run_before(self, tr_id: int) -> Before:
        row = self.db.one(_TASK_RUN_STATE, (tr_id,))
        if row is None:
            raise NotFound(f"task run {tr_id} not found")
        return Before(
            State(row["state"]), row["task_id"], bool(row["allow_failure"]), row["fork_of"]
        )

    def before_many(self, ids: Sequence[int]) -> dict[int, Before]:
        """What task runs ``ids`` are now, by id, in one statement (or a few)."""
        found: dict[int, Before] = {}
        for part in parts(ids, self.db.rows_at_once(1)):
            table, params = self.db.ids(part)
            for r in self.db.all(_TASK_RUNS_STATES.format(ids=table), params):
                before = Before(
                    State(r["state"]), r["task_id"], bool(r["allow_failure"]), r["fork_of"]
                )
                found[int(r["id"])] = before
        return found

    def execution_state(self, ex_id: int) -> State:
        row = self.db.one(_EXECUTION_STATE, (ex_id,))
        if row is None:
            raise NotFound(f"execution {ex_id} not found")
        return State(row["state"])

    # -- history -----------------------------------------------------------------------
    def created(self, ex_id: int, tr_id: int | None, now: float, reason: str | None = None) -> None:
        """A row was created (CREATED): its first line of history."""
        self._transitions.append((ex_id, tr_id, None, State.CREATED.value, now, reason))

    def _forget_history(self) -> None:
        """The transaction rolled back: so does its history."""
        self._transitions.clear()

    def _write_history(self) -> None:
        """Every change of the transaction, in one statement, just before it commits."""
        rows, self._transitions = self._transitions, []
        if rows:
            self.db.later_many(_INSERT_HISTORY, rows)


def _rows(changes: Iterable[Change], now: float) -> list[tuple[Any, ...]]:
    """The ``state_history`` rows of changes made at ``now``."""
    return [(c.execution_id, c.run_id, c.old.value, c.new.value, now, c.reason) for c in changes]


#: What an attempt that ended well ends its task run in (:meth:`Transitions.succeeded`).
ENDS_WELL = frozenset({State.SUCCESS, State.WARNING, State.SKIPPED})


def _finish(table: str, plain: bool, cte: bool) -> str:
    """:data:`FINISH_ATTEMPTS` for rows in ``table``: plain successes (their state
    and reasons constants) or not (read from the rows); in a writable CTE, returning
    what the task runs' move takes from them (PostgreSQL; SQLite's RETURNING names
    only the updated table's columns, and it moves them apart)."""
    if plain:  # (the task runs' move takes constants too)
        return FINISH_ATTEMPTS.format(
            values=table, state="'SUCCESS'", reason="NULL", error="NULL", more=""
        )
    more = ", v.column5 AS state, v.column8 AS task_reason" if cte else ""
    return FINISH_ATTEMPTS.format(
        values=table, state="v.column5", reason="v.column6", error="v.column7", more=more
    )


def _routine(change: Change, by: By) -> bool:
    """A move whose history its attempt holds: a task run's, by work, without reason."""
    return (
        change.run_id is not None
        and by is By.WORK
        and change.reason is None
        and (change.old, change.new) in ROUTINE
    )


def _illegal(change: Change, by: By, why: str = "") -> IllegalTransition:
    what = (
        f"execution {change.execution_id}"
        if change.run_id is None
        else f"task run {change.run_id} of execution {change.execution_id}"
    )
    return IllegalTransition(
        f"{what}: illegal transition {change.old.value} -> {change.new.value}"
        f"{f' ({why})' if why else ''} ({by.value}, asked by {_caller()})"
    )


def _caller() -> str:
    """The first function outside this module on the stack: who asked."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "?"
    return f"{frame.f_code.co_qualname} ({frame.f_code.co_filename.rsplit('/', 1)[-1]})"
