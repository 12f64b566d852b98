-- ordo schema, version 1 (SQLite). Times are UTC seconds since the epoch (REAL).

CREATE TABLE flow_revisions (
    id           INTEGER PRIMARY KEY,
    namespace    TEXT    NOT NULL,
    flow_id      TEXT    NOT NULL,
    revision     INTEGER NOT NULL,
    content_hash TEXT    NOT NULL,
    path         TEXT,
    source       TEXT    NOT NULL,
    definition   TEXT    NOT NULL,
    created_at   REAL    NOT NULL,
    UNIQUE (namespace, flow_id, revision)
);
CREATE INDEX flow_revisions_hash ON flow_revisions (content_hash);

CREATE TABLE executions (
    id          INTEGER PRIMARY KEY,
    revision_id INTEGER NOT NULL REFERENCES flow_revisions (id),
    namespace   TEXT    NOT NULL,
    flow_id     TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    inputs      TEXT    NOT NULL,
    labels      TEXT    NOT NULL,
    pending     INTEGER NOT NULL,
    reason      TEXT,
    created_at  REAL    NOT NULL,
    started_at  REAL,
    ended_at    REAL,
    deadline    REAL,
    parent_id   INTEGER REFERENCES executions (id)
);
CREATE INDEX executions_state ON executions (state, id);
CREATE INDEX executions_flow ON executions (namespace, flow_id, id);
CREATE INDEX executions_deadline ON executions (deadline) WHERE deadline IS NOT NULL;

CREATE TABLE task_runs (
    id              INTEGER PRIMARY KEY,
    execution_id    INTEGER NOT NULL REFERENCES executions (id),
    task_id         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    pending_deps    INTEGER NOT NULL,
    allow_failure   INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_id INTEGER,
    reason          TEXT,
    created_at      REAL    NOT NULL,
    started_at      REAL,
    ended_at        REAL
);
CREATE INDEX task_runs_execution ON task_runs (execution_id, task_id);

CREATE TABLE task_run_deps (
    upstream_id INTEGER NOT NULL REFERENCES task_runs (id),
    task_run_id INTEGER NOT NULL REFERENCES task_runs (id),
    PRIMARY KEY (upstream_id, task_run_id)
) WITHOUT ROWID;

CREATE TABLE ready (
    task_run_id  INTEGER PRIMARY KEY REFERENCES task_runs (id),
    execution_id INTEGER NOT NULL,
    not_before   REAL    NOT NULL
);
CREATE INDEX ready_order ON ready (not_before, task_run_id);
CREATE INDEX ready_execution ON ready (execution_id, not_before);

CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    task_run_id      INTEGER NOT NULL REFERENCES task_runs (id),
    execution_id     INTEGER NOT NULL,
    number           INTEGER NOT NULL,
    state            TEXT    NOT NULL,
    worker_id        TEXT,
    lease_expires_at REAL,
    started_at       REAL    NOT NULL,
    ended_at         REAL,
    exit_code        INTEGER,
    reason           TEXT,
    error            TEXT,
    cpu_seconds      REAL,
    peak_rss_kb      INTEGER,
    UNIQUE (task_run_id, number)
);
CREATE INDEX attempts_execution ON attempts (execution_id);
CREATE INDEX attempts_lease ON attempts (lease_expires_at) WHERE state = 'RUNNING';

CREATE TABLE state_history (
    id           INTEGER PRIMARY KEY,
    execution_id INTEGER NOT NULL,
    task_run_id  INTEGER,
    from_state   TEXT,
    to_state     TEXT    NOT NULL,
    at           REAL    NOT NULL,
    reason       TEXT
);
CREATE INDEX state_history_execution ON state_history (execution_id, id);

CREATE TABLE logs (
    id           INTEGER PRIMARY KEY,
    execution_id INTEGER NOT NULL,
    attempt_id   INTEGER NOT NULL,
    at           REAL    NOT NULL,
    stream       TEXT    NOT NULL,
    line         TEXT    NOT NULL
);
CREATE INDEX logs_execution ON logs (execution_id, id);
CREATE INDEX logs_attempt ON logs (attempt_id, id);

CREATE TABLE outputs (
    attempt_id   INTEGER NOT NULL REFERENCES attempts (id),
    task_run_id  INTEGER NOT NULL,
    execution_id INTEGER NOT NULL,
    key          TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    PRIMARY KEY (attempt_id, key)
);
CREATE INDEX outputs_execution ON outputs (execution_id);

CREATE TABLE metrics (
    id           INTEGER PRIMARY KEY,
    attempt_id   INTEGER NOT NULL REFERENCES attempts (id),
    task_run_id  INTEGER NOT NULL,
    execution_id INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    value        REAL    NOT NULL,
    tags         TEXT    NOT NULL,
    at           REAL    NOT NULL
);
CREATE INDEX metrics_execution ON metrics (execution_id);
