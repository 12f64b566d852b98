"""The SQL both backends speak, named after what it does. Placeholders are ``?``; the
PostgreSQL backend rewrites them. Claiming lives in each backend's module. A ``{}`` in a
batch statement takes :func:`marks` or :func:`value_rows`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

FIND_REVISION = """
SELECT id, namespace, flow_id, revision, content_hash, path, created_at, definition
FROM flow_revisions WHERE path IS ? ORDER BY id DESC LIMIT 1
"""
GET_REVISION = """
SELECT id, namespace, flow_id, revision, content_hash, path, created_at, definition
FROM flow_revisions WHERE id = ?
"""
INSERT_REVISION = """
INSERT INTO flow_revisions
    (namespace, flow_id, revision, content_hash, path, source, definition, created_at,
     scripts, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
LIST_FLOWS = """
SELECT r.id, r.namespace, r.flow_id, r.revision, r.content_hash, r.path, r.created_at,
       r.definition
FROM flow_revisions r
WHERE r.revision = (SELECT max(revision) FROM flow_revisions x
                    WHERE x.namespace = r.namespace AND x.flow_id = r.flow_id)
ORDER BY r.namespace, r.flow_id
"""

EXECUTION_COLUMNS = """id, revision_id, namespace, flow_id, state, inputs, labels, pending,
    reason, created_at, started_at, ended_at, deadline, parent_id, root_id, parent_attempt_id,
    outputs, stopped, dev, saved_name, saved_description, saved_at, original_id, started_by,
    queue, options, scope, kind"""
INSERT_EXECUTION = """
INSERT INTO executions
    (revision_id, namespace, flow_id, state, inputs, labels, pending, created_at, deadline,
     parent_id, root_id, parent_attempt_id, continue_on_error, dev, original_id,
     idempotency_key, started_by, queue, options, scope, kind)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
BY_IDEMPOTENCY_KEY = "SELECT id FROM executions WHERE idempotency_key = ?"
OF_ROOT = "execution_id IN (SELECT id FROM executions WHERE root_id = ?)"
SET_ROOT = "UPDATE executions SET root_id = id WHERE id = ?"
EXECUTION_ROOT = "SELECT root_id, dev FROM executions WHERE id = ?"
EXECUTION_QUEUE = "SELECT queue FROM executions WHERE id = ?"
EXECUTION_OPTIONS = "SELECT options FROM executions WHERE id = ?"
NAMESPACES = "SELECT DISTINCT namespace FROM flow_revisions ORDER BY namespace"
CHILDREN = f"""
SELECT {EXECUTION_COLUMNS} FROM executions WHERE parent_id = ? AND kind <> 'CONNECTION'
ORDER BY id
"""
CALLS = f"""
SELECT {EXECUTION_COLUMNS} FROM executions WHERE parent_id = ? AND kind = 'CONNECTION'
ORDER BY id
"""
RUNNING_CHILDREN = """
SELECT id FROM executions WHERE parent_id = ? AND state IN ('CREATED', 'QUEUED', 'RUNNING')
ORDER BY id
"""
EXECUTION_LINEAGE = "SELECT parent_id, namespace, flow_id FROM executions WHERE id = ?"
SET_STOPPED = "UPDATE executions SET stopped = coalesce(stopped, ?) WHERE id = ?"
EXECUTION_END_INFO = (
    "SELECT reason, stopped, revision_id, parent_attempt_id FROM executions WHERE id = ?"
)
EXECUTIONS_ENDED = "SELECT id, state FROM executions WHERE id IN ({}) AND ended_at IS NOT NULL"
UNLEASE = "UPDATE attempts SET lease_expires_at = NULL WHERE id = ?"
ATTEMPT_TASK = """
SELECT task_runs.task_id, task_runs.id FROM attempts
JOIN task_runs ON task_runs.id = attempts.task_run_id
WHERE attempts.id = ?
"""
GET_EXECUTION = f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?"
LIST_EXECUTIONS = f"SELECT {EXECUTION_COLUMNS} FROM executions"
EXECUTION_STATE = "SELECT state FROM executions WHERE id = ?"
EXECUTION_REVISION = "SELECT revision_id, continue_on_error FROM executions WHERE id = ?"
EXECUTION_PENDING = "SELECT pending FROM executions WHERE id = ?"
EXECUTION_REASON = "SELECT reason FROM executions WHERE id = ?"
SET_EXECUTION_REASON = "UPDATE executions SET reason = coalesce(reason, ?) WHERE id = ?"
EXECUTION_ENDED = "UPDATE executions SET ended_at = ?, reason = ?, outputs = ? WHERE id = ?"
EXECUTION_PENDING_DOWN = """
UPDATE executions SET pending = pending - ? WHERE id = ? RETURNING pending
"""
EXPIRED_EXECUTIONS = """
SELECT id FROM executions
WHERE deadline IS NOT NULL AND deadline <= ? AND state IN ('CREATED', 'RUNNING')
  AND reason IS NULL
"""

TASK_RUN_COLUMNS = """id, execution_id, task_id, state, pending_deps, allow_failure, attempts,
    last_attempt_id, reason, created_at, started_at, ended_at, fork_of, fork_index,
    parent_run_id"""
INSERT_TASK_RUNS = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue,
     concurrency_key)
SELECT * FROM {values}
RETURNING id, task_id
"""
TASK_RUN_TYPES = (
    "BIGINT",
    "TEXT",
    "TEXT",
    "BIGINT",
    "BIGINT",
    "DOUBLE PRECISION",
    "TEXT",
    "TEXT",
)
TASK_RUNS = f"SELECT {TASK_RUN_COLUMNS} FROM task_runs WHERE execution_id = ? ORDER BY id"
TASK_RUN_STATE = "SELECT state, task_id, allow_failure, fork_of FROM task_runs WHERE id = ?"
TASK_RUN_FORK = "SELECT fork_of, fork_index, fork_value FROM task_runs WHERE id = ?"
INSERT_ITEM = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue, fork_of,
     fork_index, fork_value, concurrency_key)
VALUES (?, ?, 'CREATED', 0, ?, ?, ?, ?, ?, ?, ?)
"""
FORKED = "UPDATE task_runs SET forks_pending = ?, forks_next = ? WHERE id = ?"
#: One item of a for_each task run ended: one fewer pending.
ITEM_ENDED = """
UPDATE task_runs SET forks_pending = forks_pending - 1, forks_next = forks_next + 1 WHERE id = ?
RETURNING forks_pending, forks_next
"""
READY_NEXT_ITEM = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT id, execution_id, ?, queue, concurrency_key FROM task_runs
WHERE fork_of = ? AND state IN ('CREATED', 'RESTARTED')
  AND NOT EXISTS (SELECT 1 FROM ready r WHERE r.task_run_id = task_runs.id)
ORDER BY fork_index LIMIT 1
"""
READY_ITEMS = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT id, execution_id, ?, queue, concurrency_key FROM task_runs
WHERE fork_of = ? AND fork_index < ?
"""
ITEM_STATES = """
SELECT state, allow_failure, count(*), min(fork_index) FROM task_runs WHERE fork_of = ?
GROUP BY state, allow_failure
"""
FIRST_ITEM_FAILURE = """
SELECT fork_index, reason FROM task_runs WHERE fork_of = ? AND state = ?
ORDER BY fork_index LIMIT 1
"""
FORK_COUNTS = """
SELECT task_id, count(*) FROM task_runs
WHERE execution_id = ? AND fork_of IS NOT NULL GROUP BY task_id
"""
INSERT_CALL_RUN = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue,
     parent_run_id, started_at)
VALUES (?, ?, 'CREATED', 0, 1, ?, 'default', ?, ?)
"""
TASK_RUN_STARTED = """
UPDATE task_runs SET attempts = ?, last_attempt_id = ?, started_at = coalesce(started_at, ?)
WHERE id = ?
"""
#: What the end of an execution is decided from: its task runs (not a handler's calls)
#: by state, allow_failure and whether skipped because something failed.
END_FACTS = """
SELECT state, allow_failure,
    CASE WHEN state = 'SKIPPED' AND attempts = 0 AND coalesce(reason, '') <> 'skipped on request'
         THEN 1 ELSE 0 END,
    count(*)
FROM task_runs WHERE execution_id = ? AND parent_run_id IS NULL
GROUP BY 1, 2, 3
"""
FIRST_FAILURE = """
SELECT task_id, reason FROM task_runs
WHERE execution_id = ? AND state = 'FAILED' AND allow_failure = 0 AND parent_run_id IS NULL
ORDER BY ended_at, id LIMIT 1
"""
UNSTARTED_TASK_RUNS = """
SELECT id FROM task_runs WHERE execution_id = ? AND state IN ('CREATED', 'RESTARTED')
ORDER BY id
"""

#: Task runs waiting for their next attempt: RUNNING, their last attempt ended and no
#: for_each items of theirs still to end.
BETWEEN_ATTEMPTS = """
SELECT t.id FROM task_runs t JOIN attempts a ON a.id = t.last_attempt_id
WHERE t.execution_id = ? AND t.state = 'RUNNING' AND a.state <> 'RUNNING'
  AND t.forks_pending = 0 AND (a.reason IS NULL OR a.reason <> 'forked')
ORDER BY t.id
"""
KILLING_AMONG = "SELECT id FROM executions WHERE state = 'KILLING' AND id IN ({})"
#: Running executions among some: why each stops (a timeout) and its first hard failure.
FAILING_AMONG = """
SELECT e.id, e.reason, e.revision_id, e.continue_on_error,
       (SELECT t.task_id FROM task_runs t
        WHERE t.execution_id = e.id AND t.state = 'FAILED' AND t.allow_failure = 0
        ORDER BY t.id LIMIT 1)
FROM executions e WHERE e.state = 'RUNNING' AND e.id IN ({})
"""
TREE_WORKERS = """
SELECT DISTINCT a.worker_id FROM attempts a JOIN executions e ON e.id = a.execution_id
WHERE e.root_id = ? AND a.state = 'RUNNING' AND a.worker_id IS NOT NULL
"""
WORKERS_ATTEMPTS = """
SELECT a.id, a.task_run_id, a.execution_id, e.revision_id, t.task_id, a.number,
       coalesce(t.started_at, a.started_at), a.worker_id, a.launched_at
FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN executions e ON e.id = a.execution_id
WHERE a.state = 'RUNNING' AND a.worker_id = ? AND a.lease_expires_at IS NOT NULL
ORDER BY a.id
"""
# launched: the full lease from now on (a claim waiting for a slot has a short one); an
# attempt already ended or waiting unleased for its child execution is left as it is
MARK_LAUNCHED = """
UPDATE attempts SET launched_at = ?, lease_expires_at = ?
WHERE id {ids} AND launched_at IS NULL AND state = 'RUNNING' AND lease_expires_at IS NOT NULL
"""
SET_PROCESS = """
UPDATE attempts SET process_host = ?, process_group = ?, process_started = ?
WHERE id = ? AND state = 'RUNNING'
"""
EXPIRED_PROCESSES = """
SELECT id, process_group, process_started FROM attempts
WHERE state = 'RUNNING' AND lease_expires_at < ? AND process_host = ?
  AND process_group IS NOT NULL
ORDER BY lease_expires_at LIMIT ?
"""
WORKER_PROCESSES = """
SELECT id, process_group, process_started FROM attempts
WHERE state = 'RUNNING' AND worker_id = ? AND lease_expires_at IS NOT NULL
  AND process_host = ? AND process_group IS NOT NULL
ORDER BY id
"""

INSERT_DEP = "INSERT INTO task_run_deps (upstream_id, task_run_id) VALUES (?, ?)"
DEPENDENTS = "SELECT task_run_id FROM task_run_deps WHERE upstream_id = ?"
DEPENDENTS_DOWN = """
UPDATE task_runs SET pending_deps = pending_deps - 1
WHERE id IN (SELECT task_run_id FROM task_run_deps WHERE upstream_id = ?)
"""
READY_DEPENDENTS = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT t.id, t.execution_id, ?, t.queue, t.concurrency_key
FROM task_run_deps d JOIN task_runs t ON t.id = d.task_run_id
WHERE d.upstream_id = ? AND t.pending_deps = 0 AND t.state IN ('CREATED', 'RESTARTED')
RETURNING task_run_id
"""
INSERT_READY = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
VALUES (?, ?, ?, ?, ?)
"""
REQUEUE = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT id, execution_id, ?, queue, concurrency_key FROM task_runs WHERE id = ?
"""
#: An execution starts (or leaves QUEUED): every task run waiting for nothing is ready.
READY_STARTABLE = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT id, execution_id, ?, queue, concurrency_key FROM task_runs
WHERE execution_id = ? AND state = 'CREATED' AND pending_deps = 0 AND fork_of IS NULL
  AND parent_run_id IS NULL
"""
COUNTED_ATTEMPTS = """
SELECT count(*) FROM attempts a JOIN task_runs t ON t.id = a.task_run_id
WHERE a.task_run_id = ? AND (a.reason IS NULL OR a.reason <> 'handed back')
  AND a.number > t.retries_from
"""
ATTEMPT_CLAIM = """
SELECT a.id, a.task_run_id, a.execution_id, e.revision_id, t.task_id, a.number,
       coalesce(t.started_at, a.started_at)
FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN executions e ON e.id = a.execution_id
WHERE a.id = ?
"""
OWN_RUNNING = """
SELECT a.id, a.task_run_id, a.execution_id, e.revision_id, t.task_id, a.number,
       coalesce(t.started_at, a.started_at)
FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN executions e ON e.id = a.execution_id
WHERE a.state = 'RUNNING' AND a.worker_id = ?
ORDER BY a.id
"""
EXPIRED_LEASES = """
SELECT a.id, a.task_run_id, a.execution_id, e.revision_id, t.task_id, a.number,
       coalesce(t.started_at, a.started_at), a.worker_id, a.launched_at
FROM attempts a JOIN task_runs t ON t.id = a.task_run_id JOIN executions e ON e.id = a.execution_id
WHERE a.state = 'RUNNING' AND a.lease_expires_at < ?
ORDER BY a.lease_expires_at LIMIT ?
"""
DELETE_READY = "DELETE FROM ready WHERE task_run_id = ?"

ATTEMPT_COLUMNS = """id, task_run_id, execution_id, number, state, worker_id,
    lease_expires_at, started_at, ended_at, exit_code, reason, error, cpu_seconds,
    peak_rss_kb"""
INSERT_ATTEMPT = """
INSERT INTO attempts
    (task_run_id, execution_id, number, state, worker_id, lease_expires_at, started_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
ATTEMPTS = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE execution_id = ? ORDER BY id"
FINISH_ATTEMPT = """
UPDATE attempts
SET state = ?, ended_at = ?, exit_code = ?, reason = ?, error = ?, cpu_seconds = ?,
    peak_rss_kb = ?, lease_expires_at = NULL
WHERE id = ? AND state = 'RUNNING'
"""
HEARTBEAT = """
UPDATE attempts SET lease_expires_at = ?
WHERE id = ? AND worker_id = ? AND state = 'RUNNING'
"""
RUNNING_ATTEMPTS = "SELECT id FROM attempts WHERE execution_id = ? AND state = 'RUNNING'"

HISTORY = """
SELECT execution_id, task_run_id, from_state, to_state, at, reason, id
FROM state_history WHERE execution_id = ? ORDER BY id
"""
#: What the attempts of an execution say of its routine moves (:mod:`ordo.store.history`).
HISTORY_ATTEMPTS = """
SELECT id, task_run_id, execution_id, number, state, reason, error, started_at, ended_at
FROM attempts WHERE execution_id = ? AND number >= 1
"""

INSERT_LOG = """
INSERT INTO logs (execution_id, attempt_id, at, stream, line) VALUES (?, ?, ?, ?, ?)
"""
LOGS = """
SELECT id, execution_id, attempt_id, at, stream, line FROM logs
WHERE execution_id = ? AND id > ? ORDER BY id LIMIT ?
"""

INSERT_OUTPUT = """
INSERT INTO outputs (attempt_id, task_run_id, execution_id, key, value) VALUES (?, ?, ?, ?, ?)
"""
OUTPUTS = """
SELECT t.task_id, t.fork_index, o.key, o.value
FROM outputs o JOIN task_runs t ON t.id = o.task_run_id AND t.last_attempt_id = o.attempt_id
WHERE o.execution_id = ?
"""
ATTEMPT_OUTPUTS = "SELECT key, value FROM outputs WHERE attempt_id = ?"
#: the outputs of the called task runs (a handler's calls, a flow function's steps)
CALLED_OUTPUTS = """
SELECT t.id, o.key, o.value
FROM outputs o JOIN task_runs t ON t.id = o.task_run_id AND t.last_attempt_id = o.attempt_id
WHERE o.execution_id = ? AND t.parent_run_id IS NOT NULL
"""

INSERT_METRIC = """
INSERT INTO metrics (attempt_id, task_run_id, execution_id, name, kind, value, tags, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
METRICS = """
SELECT attempt_id, task_run_id, name, kind, value, tags, at FROM metrics
WHERE execution_id = ? ORDER BY id
"""

INSERT_CHECK = """
INSERT INTO checks
    (attempt_id, task_run_id, execution_id, phase, position, kind, ok, message, output,
     started_at, ended_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
CHECKS = """
SELECT attempt_id, task_run_id, phase, position, kind, ok, message, output, started_at,
       ended_at
FROM checks WHERE execution_id = ? ORDER BY id
"""

REGISTER_WORKER = """
INSERT INTO workers (id, host, pid, queues, started_at, heartbeat_at, running)
VALUES (?, ?, ?, ?, ?, ?, 0)
ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
    queues = excluded.queues, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL
"""
WORKER_HEARTBEAT = "UPDATE workers SET heartbeat_at = ?, running = ? WHERE id = ?"
WORKER_STOPPED = "UPDATE workers SET stopped_at = ?, running = 0, heartbeat_at = ? WHERE id = ?"
LIST_WORKERS = """
SELECT id, host, pid, queues, started_at, heartbeat_at, running, stopped_at FROM workers
WHERE stopped_at IS NULL OR stopped_at > ? ORDER BY started_at DESC, id LIMIT ?
"""

CONNECTION_COLUMNS = "name, type, config, created_at, updated_at"
GET_CONNECTION = f"SELECT {CONNECTION_COLUMNS} FROM connections WHERE name = ?"
LIST_CONNECTIONS = f"SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY name"
INSERT_CONNECTION = """
INSERT INTO connections (name, type, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
"""
UPDATE_CONNECTION = "UPDATE connections SET type = ?, config = ?, updated_at = ? WHERE name = ?"
DELETE_CONNECTION = "DELETE FROM connections WHERE name = ?"
LATEST_REVISION = """
SELECT id, namespace, flow_id, revision, content_hash, path, created_at, definition
FROM flow_revisions WHERE namespace = ? AND flow_id = ? ORDER BY revision DESC LIMIT 1
"""
REVISION_NUMBER = """
SELECT id, namespace, flow_id, revision, content_hash, path, created_at, definition
FROM flow_revisions WHERE namespace = ? AND flow_id = ? AND revision = ?
"""


# -- batches: one statement for many rows. ``{values}`` is a table of rows (columns
# column1, column2, ...) and ``{ids}`` a membership test, both from the backend
# (VALUES and IN lists on SQLite; unnest() and = ANY() of arrays on PostgreSQL, so that
# the text is the same whatever the batch size and the server can keep its plan).
INSERT_ATTEMPTS = """
INSERT INTO attempts
    (task_run_id, execution_id, number, state, worker_id, lease_expires_at, started_at)
SELECT * FROM {values}
RETURNING id, task_run_id, number
"""
ATTEMPT_TYPES = (
    "BIGINT",
    "BIGINT",
    "BIGINT",
    "TEXT",
    "TEXT",
    "DOUBLE PRECISION",
    "DOUBLE PRECISION",
)
FINISH_SUCCESSES = """
UPDATE attempts
SET state = 'SUCCESS', ended_at = ?, exit_code = CAST(v.column2 AS INTEGER), reason = NULL,
    error = NULL, cpu_seconds = CAST(v.column3 AS DOUBLE PRECISION),
    peak_rss_kb = CAST(v.column4 AS BIGINT), lease_expires_at = NULL
FROM {values}
WHERE attempts.id = v.column1 AND attempts.state = 'RUNNING'
RETURNING attempts.id, attempts.task_run_id
"""
SUCCESS_TYPES = ("BIGINT", "BIGINT", "DOUBLE PRECISION", "BIGINT")
DEPENDENTS_DOWN_MANY = """
UPDATE task_runs
SET pending_deps = pending_deps - (
    SELECT count(*) FROM task_run_deps d
    WHERE d.task_run_id = task_runs.id AND d.upstream_id {ids})
WHERE id IN (SELECT task_run_id FROM task_run_deps WHERE upstream_id {ids})
RETURNING id, execution_id, queue, pending_deps, state, concurrency_key
"""
#: PostgreSQL: :data:`DEPENDENTS_DOWN_MANY` and the ready rows of those waiting for
#: nothing more, in one statement; the task runs made ready.
DEPENDENTS_DOWN_AND_READY = f"""
WITH down AS ({DEPENDENTS_DOWN_MANY})
INSERT INTO ready (task_run_id, execution_id, not_before, queue, concurrency_key)
SELECT id, execution_id, ?, queue, concurrency_key FROM down
WHERE pending_deps = 0 AND state IN ('CREATED', 'RESTARTED')
RETURNING task_run_id
"""


def marks(values: Sequence[Any]) -> str:
    """``?, ?, ?``: one placeholder per value (an IN list)."""
    return ", ".join("?" * len(values))


def value_rows(rows: Sequence[Sequence[Any]]) -> str:
    """``(?, ?), (?, ?)``: placeholders for a VALUES list of these rows."""
    one = "(" + ", ".join("?" * len(rows[0])) + ")"
    return ", ".join([one] * len(rows))


def flat(rows: Sequence[Sequence[Any]]) -> list[Any]:
    """The rows' values in one list, for :func:`value_rows`."""
    return [value for row in rows for value in row]


#: ``INSERT ... VALUES (...)`` with one plain tuple (no nested parentheses) at its end
_ONE_TUPLE = re.compile(r"^(?P<head>\s*INSERT\b.*\bVALUES)\s*(?P<one>\([^()]*\))\s*$", re.S | re.I)


def inserts(sql: str, rows: Sequence[Sequence[Any]]) -> list[tuple[str, list[Any]]] | None:
    """An ``INSERT ... VALUES (?, ...)`` for many rows as a few statements of up to 500
    rows each (one round trip and one plan per chunk, whatever the backend), with their
    parameters; None when ``sql`` is not such an INSERT."""
    found = _ONE_TUPLE.match(sql)
    if found is None or not rows:
        return None
    head, one = found["head"], found["one"]
    size = max(1, min(500, 30_000 // max(len(rows[0]), 1)))  # SQLite: 32,766 parameters
    return [
        (f"{head} {', '.join([one] * len(chunk))}", flat(chunk))
        for chunk in (rows[i : i + size] for i in range(0, len(rows), size))
    ]


RESTART_EXECUTION = """
UPDATE executions SET reason = NULL, ended_at = NULL, outputs = NULL, stopped = NULL,
    pending = ?, inputs = ?, deadline = ?
WHERE id = ?
"""
RESTART_TASK_RUN = """
UPDATE task_runs SET pending_deps = ?, reason = NULL, started_at = NULL, ended_at = NULL,
    forks_pending = ?, retries_from = attempts
WHERE id = ?
"""
TASK_RUN_RESUMED = "UPDATE task_runs SET started_at = ? WHERE id = ?"

# -- concurrency limits (store/limits.py) ---------------------------------------------
ACTIVE_EXECUTIONS = """
SELECT count(*) FROM executions
WHERE state IN ('CREATED', 'RUNNING', 'KILLING') AND namespace = ? AND flow_id = ? AND id <> ?
"""
OLDEST_QUEUED = """
SELECT id, revision_id FROM executions
WHERE state = 'QUEUED' AND namespace = ? AND flow_id = ? ORDER BY id LIMIT 1
"""
EXECUTION_DEQUEUED = "UPDATE executions SET reason = NULL, deadline = ? WHERE id = ?"
DELETE_READY_OF = "DELETE FROM ready WHERE execution_id = ?"
READY_KEYS = """
SELECT DISTINCT concurrency_key FROM ready WHERE concurrency_key IS NOT NULL AND {where}
"""
#: Task runs holding a slot of a key: running (a for_each task run whose items run holds
#: none; its items do), not waiting in ``ready`` for a retry.
KEY_RUNNING = """
SELECT count(*) FROM task_runs t
WHERE t.concurrency_key = ? AND t.state IN ('RUNNING', 'KILLING') AND t.forks_pending = 0
  AND NOT EXISTS (SELECT 1 FROM ready r WHERE r.task_run_id = t.id)
"""
KEYED_READY = """
SELECT t.id, t.execution_id, t.task_id, t.state, t.attempts, t.started_at,
       e.revision_id, e.state
FROM (SELECT task_run_id, not_before FROM ready WHERE concurrency_key = ? AND {where}
      ORDER BY not_before, task_run_id LIMIT ?) AS r
JOIN task_runs t ON t.id = r.task_run_id JOIN executions e ON e.id = t.execution_id
ORDER BY r.not_before, t.id
"""
TAKE_READY = "DELETE FROM ready WHERE task_run_id {ids} RETURNING task_run_id"

# -- restart, replay and mark (store/recovery.py) --------------------------------------
INSERT_TASK_RUN = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue,
     concurrency_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
DELETE_DEPS_OF = """
DELETE FROM task_run_deps
WHERE task_run_id IN (SELECT id FROM task_runs WHERE execution_id = ? AND fork_of IS NULL)
"""
SET_REVISION = "UPDATE executions SET revision_id = ? WHERE id = ?"
#: The child a flow task's first attempt after a restart (number = retries_from + 1)
#: restarts: the one the attempt before it waited for, if that ended badly.
CHILD_TO_RESTART = """
SELECT e.id FROM executions e
JOIN attempts a ON a.id = e.parent_attempt_id
JOIN task_runs t ON t.id = a.task_run_id
WHERE t.id = ? AND t.retries_from > 0 AND a.number = t.retries_from
  AND ? = t.retries_from + 1 AND e.state IN ('FAILED', 'KILLED', 'WARNING')
ORDER BY e.id DESC LIMIT 1
"""
ADOPT_CHILD = "UPDATE executions SET parent_attempt_id = ? WHERE id = ?"
INSERT_COPIED_ATTEMPT = """
INSERT INTO attempts
    (task_run_id, execution_id, number, state, started_at, ended_at, reason, error)
VALUES (?, ?, 0, ?, ?, ?, ?, ?)
"""
COPY_OUTPUTS = """
INSERT INTO outputs (attempt_id, task_run_id, execution_id, key, value)
SELECT ?, ?, ?, key, value FROM outputs WHERE attempt_id = ?
"""
COPIED_RUN = """
UPDATE task_runs SET started_at = ?, ended_at = ?, last_attempt_id = ?
WHERE id = ?
"""
INSERT_MARK_ATTEMPT = """
INSERT INTO attempts
    (task_run_id, execution_id, number, state, worker_id, started_at, ended_at, reason, error)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
CLEAR_EXECUTION_REASON = "UPDATE executions SET reason = NULL WHERE id = ?"
