-- Queues (a task runs only on workers serving its queue) and the workers table.

ALTER TABLE task_runs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE ready ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
CREATE INDEX ready_queue ON ready (queue, not_before, task_run_id);

CREATE TABLE workers (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT    NOT NULL,
    started_at   REAL    NOT NULL,
    heartbeat_at REAL    NOT NULL,
    running      INTEGER NOT NULL DEFAULT 0,
    stopped_at   REAL
);
CREATE INDEX workers_heartbeat ON workers (heartbeat_at);
