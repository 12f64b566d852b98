"""State history as it is read: the rows of ``state_history`` and, put back among them,
the routine moves of task runs that the attempts hold instead of rows.

Two moves happen to almost every task run and are written by no ``state_history`` row
(they were two rows per task run, 15-17 % of a fan-out's SQL time), because the attempt
that made them already records them (:data:`ROUTINE`):

- CREATED -> RUNNING when its first attempt is claimed: the attempt numbered 1, at its
  ``started_at`` (not an attempt ``ordo mark`` made, and not when a row moved the task
  run out of CREATED before: a skipped or killed task run restarted goes RUNNING from
  RESTARTED, by a row);
- RUNNING -> SUCCESS when an attempt ends SUCCESS with neither reason nor error: at its
  ``ended_at`` (a for_each task run ends when its items have, by a row; a mark or a
  replay's copy is a row too).

:meth:`~ordo.store.transitions.Transitions.transition` writes no row for a change its
caller says is routine, and :func:`merge` puts them back when the history is read. Pure
functions: no SQL here.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from ordo.model import State
from ordo.store.db import Row
from ordo.store.records import HistoryRow

#: ``(old, new)`` of the moves a task run's attempts hold instead of history rows.
ROUTINE = frozenset({(State.CREATED, State.RUNNING), (State.RUNNING, State.SUCCESS)})


# sort ranks among rows at the same time: a task run's end comes before what it caused
# (its execution's end), and a claim after what was recorded in its transaction
_END, _ROW, _START, _END_OF_START = 0, 1, 2, 3


def routine_end(state: State, reason: str | None, error: str | None) -> bool:
    """Whether an attempt that ended so holds its task run's RUNNING -> SUCCESS."""
    return state is State.SUCCESS and reason is None and error is None


def merge(rows: Iterable[Row], attempts: Iterable[Row]) -> list[HistoryRow]:
    """``state_history`` rows (``execution_id, task_run_id, from_state, to_state, at,
    reason, id``, in the order they were written) and the routine moves the
    ``attempts`` hold, put among them by time: of rows of one time, a task run's end
    comes before what it caused and its claim after what was recorded before it in its
    transaction. Each task run's rows then follow one another (each from the state the
    one before it reached), whatever the clocks of the machines that wrote them.

    Rows written for routine moves (by ordo before they were left to the attempts) are
    not doubled: no claim is put back for a task run a row moved out of CREATED, no end
    where a row of the same time says it."""
    written: list[tuple[tuple[float, int, int], HistoryRow]] = []
    left_created: set[int] = set()
    ended: set[tuple[int, float]] = set()
    for r in rows:
        tr_id, old, at = r["task_run_id"], r["from_state"], r["at"]
        row = HistoryRow(
            r["execution_id"], tr_id, State(old) if old else None, State(r["to_state"]), at,
            r["reason"],
        )  # fmt: skip
        written.append(((at, _ROW, r["id"]), row))
        if tr_id is not None and row.from_state is State.CREATED:
            left_created.add(tr_id)
        if tr_id is not None and (row.from_state, row.to_state) == _SUCCEEDED:
            ended.add((tr_id, at))
    held: list[tuple[tuple[float, int, int], HistoryRow]] = []
    for a in attempts:
        a_id, tr_id, ex_id, number = a["id"], a["task_run_id"], a["execution_id"], a["number"]
        reason, started, end = a["reason"], a["started_at"], a["ended_at"]
        first = number == 1 and reason != "marked" and tr_id not in left_created
        if first:
            row = HistoryRow(ex_id, tr_id, State.CREATED, State.RUNNING, started, None)
            held.append(((started, _START, a_id), row))
        if end is None or number < 1 or (tr_id, end) in ended:
            continue
        if routine_end(State(a["state"]), reason, a["error"]):
            row = HistoryRow(ex_id, tr_id, State.RUNNING, State.SUCCESS, end, None)
            if first and end <= started:  # one instant (or a clock that went back)
                held.append(((started, _END_OF_START, a_id), row))
            else:
                held.append(((end, _END, a_id), row))
    held.sort(key=lambda pair: pair[0])
    return _chained([row for _, row in heapq.merge(written, held, key=lambda pair: pair[0])])


_SUCCEEDED = (State.RUNNING, State.SUCCESS)


def _chained(rows: list[HistoryRow]) -> list[HistoryRow]:
    """``rows`` with each task run's own rows reordered, in the places they hold, so
    that each starts from the state the one before it reached (when one does)."""
    places: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        if row.task_run_id is not None:
            places.setdefault(row.task_run_id, []).append(i)
    out = list(rows)
    for where in places.values():
        left = [rows[i] for i in where]
        state = None if any(r.from_state is None for r in left) else State.CREATED
        for i in where:
            at = next((k for k, r in enumerate(left) if r.from_state is state), 0)
            out[i] = left.pop(at)
            state = out[i].to_state
    return out
