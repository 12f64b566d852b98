-- The steps of a running flow function or handler (durable replay): each call of a
-- @task, this.flow, this.connect, this.now or this.random, numbered in the order the
-- code made them. Run again, the code finds each completed step here and gets what it
-- gave then instead of doing it again.
CREATE TABLE steps (
    id           INTEGER PRIMARY KEY,
    execution_id INTEGER NOT NULL REFERENCES executions (id),
    task_run_id  INTEGER NOT NULL REFERENCES task_runs (id),
    number       INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    run_id       INTEGER REFERENCES task_runs (id),
    child_id     INTEGER REFERENCES executions (id),
    value        TEXT,
    attempt_id   INTEGER,
    created_at   REAL    NOT NULL,
    UNIQUE (task_run_id, number)
);
CREATE INDEX steps_run ON steps (run_id);
