"""The SQL both backends speak, named after what it does. Placeholders are ``?``; the
PostgreSQL backend rewrites them. Claiming lives in each backend's module."""

FIND_REVISION = """
SELECT id, namespace, flow_id, revision, content_hash, path, created_at, definition
FROM flow_revisions WHERE content_hash = ? AND path IS ? ORDER BY id DESC LIMIT 1
"""
GET_REVISION = """
SELECT id, namespace, flow_id, revision, content_hash, path, created_at, definition
FROM flow_revisions WHERE id = ?
"""
MAX_REVISION = "SELECT max(revision) FROM flow_revisions WHERE namespace = ? AND flow_id = ?"
INSERT_REVISION = """
INSERT INTO flow_revisions
    (namespace, flow_id, revision, content_hash, path, source, definition, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
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
    reason, created_at, started_at, ended_at, deadline, parent_id"""
INSERT_EXECUTION = """
INSERT INTO executions
    (revision_id, namespace, flow_id, state, inputs, labels, pending, created_at, deadline,
     parent_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
GET_EXECUTION = f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?"
LIST_EXECUTIONS = f"SELECT {EXECUTION_COLUMNS} FROM executions"
EXECUTION_STATE = "SELECT state FROM executions WHERE id = ?"
EXECUTION_REVISION = "SELECT revision_id FROM executions WHERE id = ?"
EXECUTION_PENDING = "SELECT pending FROM executions WHERE id = ?"
EXECUTION_REASON = "SELECT reason FROM executions WHERE id = ?"
SET_EXECUTION_STATE = """
UPDATE executions SET state = ?, reason = coalesce(?, reason) WHERE id = ? AND state = ?
"""
SET_EXECUTION_REASON = "UPDATE executions SET reason = coalesce(reason, ?) WHERE id = ?"
EXECUTION_STARTED = "UPDATE executions SET started_at = coalesce(started_at, ?) WHERE id = ?"
EXECUTION_ENDED = "UPDATE executions SET ended_at = ?, reason = ? WHERE id = ?"
EXECUTION_PENDING_DOWN = """
UPDATE executions SET pending = pending - ? WHERE id = ? RETURNING pending
"""
EXPIRED_EXECUTIONS = """
SELECT id FROM executions
WHERE deadline IS NOT NULL AND deadline <= ? AND state = 'RUNNING' AND reason IS NULL
"""

TASK_RUN_COLUMNS = """id, execution_id, task_id, state, pending_deps, allow_failure, attempts,
    last_attempt_id, reason, created_at, started_at, ended_at"""
INSERT_TASK_RUN = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
TASK_RUNS = f"SELECT {TASK_RUN_COLUMNS} FROM task_runs WHERE execution_id = ? ORDER BY id"
TASK_RUN_STATE = "SELECT state, task_id, allow_failure FROM task_runs WHERE id = ?"
TASK_RUN_FOR_CLAIM = """
SELECT t.task_id, t.state, t.attempts, t.started_at, e.revision_id, e.state
FROM task_runs t JOIN executions e ON e.id = t.execution_id
WHERE t.id = ?
"""
SET_TASK_RUN_STATE = """
UPDATE task_runs SET state = ?, reason = ?, ended_at = ? WHERE id = ? AND state = ?
"""
TASK_RUN_FIRST_START = """
UPDATE task_runs SET state = 'RUNNING', attempts = ?, last_attempt_id = ?, started_at = ?
WHERE id = ? AND state = 'CREATED'
"""
TASK_RUN_STARTED = """
UPDATE task_runs SET attempts = ?, last_attempt_id = ?, started_at = coalesce(started_at, ?)
WHERE id = ?
"""
TASK_RUN_COUNTS = "SELECT state, count(*) FROM task_runs WHERE execution_id = ? GROUP BY state"
HARD_FAILURE = """
SELECT 1 FROM task_runs WHERE execution_id = ? AND state = 'FAILED' AND allow_failure = 0
LIMIT 1
"""
FIRST_FAILURE = """
SELECT task_id, reason FROM task_runs
WHERE execution_id = ? AND state = 'FAILED' AND allow_failure = 0
ORDER BY ended_at, id LIMIT 1
"""
UNSTARTED_TASK_RUNS = """
SELECT id FROM task_runs WHERE execution_id = ? AND state = 'CREATED' ORDER BY id
"""

INSERT_DEP = "INSERT INTO task_run_deps (upstream_id, task_run_id) VALUES (?, ?)"
DEPENDENTS = "SELECT task_run_id FROM task_run_deps WHERE upstream_id = ?"
DEPENDENTS_DOWN = """
UPDATE task_runs SET pending_deps = pending_deps - 1
WHERE id IN (SELECT task_run_id FROM task_run_deps WHERE upstream_id = ?)
"""
READY_DEPENDENTS = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue)
SELECT t.id, t.execution_id, ?, t.queue
FROM task_run_deps d JOIN task_runs t ON t.id = d.task_run_id
WHERE d.upstream_id = ? AND t.pending_deps = 0 AND t.state = 'CREATED'
"""
INSERT_READY = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue) VALUES (?, ?, ?, ?)
"""
REQUEUE = """
INSERT INTO ready (task_run_id, execution_id, not_before, queue)
SELECT id, execution_id, ?, queue FROM task_runs WHERE id = ?
"""
COUNTED_ATTEMPTS = """
SELECT count(*) FROM attempts
WHERE task_run_id = ? AND (reason IS NULL OR reason <> 'handed back')
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
       coalesce(t.started_at, a.started_at), a.worker_id
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

INSERT_HISTORY = """
INSERT INTO state_history (execution_id, task_run_id, from_state, to_state, at, reason)
VALUES (?, ?, ?, ?, ?, ?)
"""
HISTORY = """
SELECT execution_id, task_run_id, from_state, to_state, at, reason
FROM state_history WHERE execution_id = ? ORDER BY id
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
SELECT t.task_id, o.key, o.value
FROM outputs o JOIN task_runs t ON t.last_attempt_id = o.attempt_id
WHERE o.execution_id = ?
"""
ATTEMPT_OUTPUTS = "SELECT key, value FROM outputs WHERE attempt_id = ?"

INSERT_METRIC = """
INSERT INTO metrics (attempt_id, task_run_id, execution_id, name, kind, value, tags, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
METRICS = """
SELECT attempt_id, task_run_id, name, kind, value, tags, at FROM metrics
WHERE execution_id = ? ORDER BY id
"""

REGISTER_WORKER = """
INSERT INTO workers (id, host, pid, queues, started_at, heartbeat_at, running)
VALUES (?, ?, ?, ?, ?, ?, 0)
"""
WORKER_HEARTBEAT = "UPDATE workers SET heartbeat_at = ?, running = ? WHERE id = ?"
WORKER_STOPPED = "UPDATE workers SET stopped_at = ?, running = 0, heartbeat_at = ? WHERE id = ?"
LIST_WORKERS = """
SELECT id, host, pid, queues, started_at, heartbeat_at, running, stopped_at FROM workers
WHERE stopped_at IS NULL OR stopped_at > ? ORDER BY started_at DESC, id LIMIT ?
"""
