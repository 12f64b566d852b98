-- Queues (a task runs only on workers serving its queue) and the workers table.

ALTER TABLE task_runs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE ready ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
CREATE INDEX ready_queue ON ready (queue, not_before, task_run_id);

CREATE TABLE workers (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          BIGINT NOT NULL,
    queues       TEXT    NOT NULL,
    started_at   DOUBLE PRECISION    NOT NULL,
    heartbeat_at DOUBLE PRECISION    NOT NULL,
    running      BIGINT NOT NULL DEFAULT 0,
    stopped_at   DOUBLE PRECISION
);
CREATE INDEX workers_heartbeat ON workers (heartbeat_at);
