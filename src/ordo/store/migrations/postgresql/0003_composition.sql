-- Child executions (flow tasks, this.flow), for_each items, execution outputs, run_if
-- STOP, and named connections.

ALTER TABLE executions ADD COLUMN root_id BIGINT;
ALTER TABLE executions ADD COLUMN parent_attempt_id BIGINT;
ALTER TABLE executions ADD COLUMN outputs TEXT;
ALTER TABLE executions ADD COLUMN stopped TEXT;
UPDATE executions SET root_id = id WHERE root_id IS NULL;
CREATE INDEX executions_root ON executions (root_id, id);
CREATE INDEX executions_parent ON executions (parent_id) WHERE parent_id IS NOT NULL;

ALTER TABLE task_runs ADD COLUMN fork_of BIGINT;
ALTER TABLE task_runs ADD COLUMN fork_index BIGINT;
ALTER TABLE task_runs ADD COLUMN fork_value TEXT;
ALTER TABLE task_runs ADD COLUMN forks_pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_runs ADD COLUMN forks_next BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_runs ADD COLUMN parent_run_id BIGINT;
CREATE INDEX task_runs_fork ON task_runs (fork_of, fork_index) WHERE fork_of IS NOT NULL;

CREATE TABLE connections (
    name       TEXT    PRIMARY KEY,
    type       TEXT    NOT NULL,
    config     TEXT    NOT NULL,
    created_at DOUBLE PRECISION    NOT NULL,
    updated_at DOUBLE PRECISION    NOT NULL
);
