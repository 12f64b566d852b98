"""The few statements more than one concern of the store speaks (each concern keeps its
own SQL in its module). Placeholders are ``?``; the PostgreSQL backend rewrites them."""

from __future__ import annotations

from ordo.model import DROPPED, NOT_RETRIED

#: A claim's columns (:func:`ordo.store.reads.claim_of`), of ``attempts a`` joined to its
#: ``task_runs t`` and ``executions e``
CLAIM_COLUMNS = """a.id AS attempt_id, a.task_run_id, a.execution_id, e.revision_id, t.task_id,
    a.number, coalesce(t.started_at, a.started_at) AS first_started_at"""
#: ready rows (or attempts) of an execution tree: the root's id
OF_ROOT = "execution_id IN (SELECT id FROM executions WHERE root_id = ?)"
ACTIVE_EXECUTIONS = """
SELECT count(*) FROM executions
WHERE state IN ('CREATED', 'RUNNING', 'KILLING') AND namespace = ? AND flow_id = ? AND id <> ?
"""

# -- executions ------------------------------------------------------------------------
SET_STOPPED = "UPDATE executions SET stopped = coalesce(stopped, ?) WHERE id = ?"
EXECUTION_ENDED = "UPDATE executions SET ended_at = ?, reason = ?, outputs = ? WHERE id = ?"
EXECUTION_PENDING_DOWN = """
UPDATE executions SET pending = pending - ? WHERE id = ? RETURNING pending
"""

# -- task runs -------------------------------------------------------------------------
#: The reason of an attempt handed back before it ran (a worker stopping): not counted.
HANDED_BACK = "handed back"
#: Whether attempt ``{a}`` of task run ``{t}`` counts: made since the task run's last
#: restart, neither handed back nor dropped (:data:`~ordo.model.DROPPED`) before it ran
#: (a replay's copy of a task run counts its attempt 0, which stands for the original's:
#: its ``retries_from`` is -1).
COUNTED = (
    "{a}.number > {t}.retries_from"
    f" AND coalesce({{a}}.reason, '') NOT IN ('{HANDED_BACK}', '{DROPPED}')"
)
#: 1 for a task run whose reason (the column ``{reason}``) says it ended FAILED because
#: its execution was failing (:data:`~ordo.model.NOT_RETRIED`), else 0: looking for the
#: failure that failed an execution, those come last
ENDED_BY_FAILURE = f"CASE WHEN coalesce({{reason}}, '') LIKE '{NOT_RETRIED}%' THEN 1 ELSE 0 END"
#: 1 for a task run (``task_runs``) SKIPPED without a counted attempt, else 0
SKIPPED_UNSTARTED = f"""CASE WHEN task_runs.state = 'SKIPPED' AND NOT EXISTS (
    SELECT 1 FROM attempts c WHERE c.task_run_id = task_runs.id
    AND {COUNTED.format(a="c", t="task_runs")}) THEN 1 ELSE 0 END"""
TASK_RUN_FORK = "SELECT fork_of, fork_index, fork_value FROM task_runs WHERE id = ?"
INSERT_ITEM = """
INSERT INTO task_runs
    (execution_id, task_id, state, pending_deps, allow_failure, created_at, queue, fork_of,
     fork_index, fork_value, concurrency_key)
VALUES (?, ?, 'CREATED', 0, ?, ?, ?, ?, ?, ?, ?)
"""
FORKED = "UPDATE task_runs SET forks_pending = ?, forks_next = ? WHERE id = ?"
TASK_RUN_STARTED = """
UPDATE task_runs SET attempts = ?, last_attempt_id = ?, started_at = coalesce(started_at, ?)
WHERE id = ?
"""
RESTART_TASK_RUN = """
UPDATE task_runs SET pending_deps = ?, reason = NULL, started_at = NULL, ended_at = NULL,
    forks_pending = ?, retries_from = attempts
WHERE id = ?
"""
INSERT_DEP = "INSERT INTO task_run_deps (upstream_id, task_run_id) VALUES (?, ?)"
DEPENDENTS_DOWN = """
UPDATE task_runs SET pending_deps = pending_deps - 1
WHERE id IN (SELECT task_run_id FROM task_run_deps WHERE upstream_id = ?)
"""

# -- the ready list --------------------------------------------------------------------
DELETE_READY = "DELETE FROM ready WHERE task_run_id = ?"
DELETE_READY_OF = "DELETE FROM ready WHERE execution_id = ?"

# -- attempts --------------------------------------------------------------------------
UNLEASE = "UPDATE attempts SET lease_expires_at = NULL WHERE id = ?"
FINISH_ATTEMPT = """
UPDATE attempts
SET state = ?, ended_at = ?, exit_code = ?, reason = ?, error = ?, cpu_seconds = ?,
    peak_rss_kb = ?, lease_expires_at = NULL
WHERE id = ? AND state = 'RUNNING'
"""
INSERT_OUTPUT = """
INSERT INTO outputs (attempt_id, task_run_id, execution_id, key, value) VALUES (?, ?, ?, ?, ?)
"""
