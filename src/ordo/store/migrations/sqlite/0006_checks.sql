-- Pre and post checks of tasks: one row per check that ran, per attempt, written in the
-- transaction that records the attempt's outcome. ``ok`` is 1 or 0; ``output`` is what a
-- command check printed (its end, when long).

CREATE TABLE checks (
    id           INTEGER PRIMARY KEY,
    attempt_id   INTEGER NOT NULL REFERENCES attempts (id),
    task_run_id  INTEGER NOT NULL,
    execution_id INTEGER NOT NULL,
    phase        TEXT    NOT NULL,
    position     INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    ok           INTEGER NOT NULL,
    message      TEXT    NOT NULL,
    output       TEXT,
    started_at   REAL    NOT NULL,
    ended_at     REAL    NOT NULL
);
CREATE INDEX checks_execution ON checks (execution_id, id);
