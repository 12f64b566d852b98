"""The overview: what the web UI and ``/metrics`` read beyond the API's reads: counts for
the dashboard, each flow's latest outcomes, a change counter that tells open pages to
refresh, and the gauges. Shared by both backends."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from msgspec import Struct

from ordo.model import State
from ordo.store.db import Db
from ordo.store.records import BUCKETS

STATES_SINCE = "SELECT created_at, state, namespace FROM executions WHERE created_at >= ?"
RECENT_OF_FLOW = """
SELECT id, state, created_at, started_at, ended_at FROM executions
WHERE namespace = ? AND flow_id = ? ORDER BY id DESC LIMIT ?
"""
#: What moves when a state changes (anywhere): a history row, an execution, an attempt
#: (a claim, whose move to RUNNING its attempt holds)
LAST_CHANGE = """
SELECT (SELECT max(id) FROM state_history) AS history, (SELECT max(id) FROM executions) AS
       executions, (SELECT max(id) FROM attempts) AS attempts
"""
#: ... of one execution: its history rows, its attempts (claims), its task runs left
#: (a routine end, held by its attempt, counts one down)
LAST_CHANGE_OF = """
SELECT (SELECT max(id) FROM state_history WHERE execution_id = ?) AS history,
       (SELECT max(id) FROM attempts WHERE execution_id = ?) AS attempts,
       (SELECT pending FROM executions WHERE id = ?) AS pending
"""
EXECUTIONS_BY_STATE = "SELECT state, count(*) AS n FROM executions GROUP BY state"
_DURATION = "(ended_at - started_at)"
TASK_RUN_DURATIONS = (
    "SELECT "
    + ", ".join(
        f"sum(CASE WHEN {_DURATION} <= {b} THEN 1 ELSE 0 END) AS le{i}"
        for i, b in enumerate(BUCKETS)
    )
    + f", count(*) AS n, coalesce(sum({_DURATION}), 0) AS total FROM task_runs "
    "WHERE ended_at IS NOT NULL AND started_at IS NOT NULL"
)
READY_DEPTH = "SELECT count(*) FROM ready"
WORKERS_ALIVE = "SELECT count(*) FROM workers WHERE stopped_at IS NULL AND heartbeat_at > ?"


class Gauges(Struct, frozen=True):
    """What ``/metrics`` shows: executions by state, the task-run duration histogram
    (cumulative counts per bucket of :data:`BUCKETS`, count, sum), the ready queue's
    depth and the workers alive."""

    executions: dict[str, int]
    durations: list[int]
    duration_count: int
    duration_sum: float
    ready: int
    workers: int


Outcome = tuple[int, State, float, float | None, float | None]


class Overview:
    """Reads for pages and ``/metrics``."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def states_since(
        self, since: float, namespaces: Sequence[str] | None = None
    ) -> list[tuple[float, State]]:
        """(created_at, state) of every execution created at or after ``since`` (in
        ``namespaces`` only, when given)."""
        return [
            (r["created_at"], State(r["state"]))
            for r in self.db.all(STATES_SINCE, (since,))
            if namespaces is None or r["namespace"] in namespaces
        ]

    def recent_outcomes(
        self, flows: Iterable[tuple[str, str]], per_flow: int = 20
    ) -> dict[tuple[str, str], list[Outcome]]:
        """The newest ``per_flow`` executions of each (namespace, flow id), newest first:
        (id, state, created_at, started_at, ended_at). One indexed read per flow."""
        found: dict[tuple[str, str], list[Outcome]] = {}
        for ns, flow_id in flows:
            found[(ns, flow_id)] = [
                (r["id"], State(r["state"]), r["created_at"], r["started_at"], r["ended_at"])
                for r in self.db.all(RECENT_OF_FLOW, (ns, flow_id, per_flow))
            ]
        return found

    def last_change(self, execution_id: int | None = None) -> tuple[int, ...]:
        """A value that changes whenever a state changes (of ``execution_id``, or of any
        execution) or an execution is created: what live pages poll."""
        if execution_id is None:
            row = self.db.one(LAST_CHANGE)
            names = ("history", "executions", "attempts")
        else:
            row = self.db.one(LAST_CHANGE_OF, (execution_id,) * 3)
            names = ("history", "attempts", "pending")
        return tuple(int(row[n] or 0) for n in names) if row else (0, 0, 0)

    def ping(self) -> None:
        """One round trip: StoreError when the database does not answer."""
        self.db.one("SELECT 1")

    def gauges(self, now: float, alive_for: float = 35.0) -> Gauges:
        by_state = {str(r["state"]): int(r["n"]) for r in self.db.all(EXECUTIONS_BY_STATE)}
        row = self.db.one(TASK_RUN_DURATIONS)
        assert row is not None  # an aggregate: always one row
        durations = [int(row[f"le{i}"] or 0) for i in range(len(BUCKETS))]
        return Gauges(
            by_state,
            durations,
            int(row["n"] or 0),
            float(row["total"] or 0),
            int(self.db.scalar(READY_DEPTH) or 0),
            int(self.db.scalar(WORKERS_ALIVE, (now - alive_for,)) or 0),
        )
