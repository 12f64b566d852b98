"""What the web UI reads beyond the API's reads: counts for the dashboard, each flow's
latest outcomes, and a change counter that tells open pages to refresh. Shared by both
backends."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ordo.model import State
from ordo.store.steps import Steps

STATES_SINCE = "SELECT created_at, state, namespace FROM executions WHERE created_at >= ?"
RECENT_OF_FLOW = """
SELECT id, state, created_at, started_at, ended_at FROM executions
WHERE namespace = ? AND flow_id = ? ORDER BY id DESC LIMIT ?
"""
#: What moves when a state changes (anywhere): a history row, an execution, an attempt
#: (a claim, whose move to RUNNING its attempt holds)
LAST_CHANGE = """
SELECT (SELECT max(id) FROM state_history), (SELECT max(id) FROM executions),
       (SELECT max(id) FROM attempts)
"""
#: ... of one execution: its history rows, its attempts (claims), its task runs left
#: (a routine end, held by its attempt, counts one down)
LAST_CHANGE_OF = """
SELECT (SELECT max(id) FROM state_history WHERE execution_id = ?),
       (SELECT max(id) FROM attempts WHERE execution_id = ?),
       (SELECT pending FROM executions WHERE id = ?)
"""
Outcome = tuple[int, State, float, float | None, float | None]


class Overview(Steps):
    """Reads for pages; :class:`~ordo.store.sql.SqlStore` adds the rest."""

    def states_since(
        self, since: float, namespaces: Sequence[str] | None = None
    ) -> list[tuple[float, State]]:
        """(created_at, state) of every execution created at or after ``since`` (in
        ``namespaces`` only, when given)."""
        return [
            (r[0], State(r[1]))
            for r in self._all(STATES_SINCE, (since,))
            if namespaces is None or r[2] in namespaces
        ]

    def recent_outcomes(
        self, flows: Iterable[tuple[str, str]], per_flow: int = 20
    ) -> dict[tuple[str, str], list[Outcome]]:
        """The newest ``per_flow`` executions of each (namespace, flow id), newest first:
        (id, state, created_at, started_at, ended_at). One indexed read per flow."""
        found: dict[tuple[str, str], list[Outcome]] = {}
        for ns, flow_id in flows:
            found[(ns, flow_id)] = [
                (r[0], State(r[1]), r[2], r[3], r[4])
                for r in self._all(RECENT_OF_FLOW, (ns, flow_id, per_flow))
            ]
        return found

    def last_change(self, execution_id: int | None = None) -> tuple[int, ...]:
        """A value that changes whenever a state changes (of ``execution_id``, or of any
        execution) or an execution is created: what live pages poll."""
        if execution_id is None:
            row = self._one(LAST_CHANGE)
        else:
            row = self._one(LAST_CHANGE_OF, (execution_id,) * 3)
        return tuple(int(v or 0) for v in row) if row else (0, 0, 0)
