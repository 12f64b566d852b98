-- ordo server: flow flags, schedule ticks, leader leases, API tokens, events,
-- notifications, and how an execution was started.

-- A flow's flags across its revisions: active (triggers start it) is set from the file
-- when a new revision is stored and changed by activate/deactivate.
CREATE TABLE flows (
    namespace  TEXT    NOT NULL,
    flow_id    TEXT    NOT NULL,
    active     INTEGER NOT NULL,
    updated_at REAL    NOT NULL,
    PRIMARY KEY (namespace, flow_id)
);

-- Where each schedule trigger's scheduler got to: ticks after checked_at are still due.
CREATE TABLE schedules (
    namespace  TEXT NOT NULL,
    flow_id    TEXT NOT NULL,
    trigger_id TEXT NOT NULL,
    checked_at REAL NOT NULL,
    PRIMARY KEY (namespace, flow_id, trigger_id)
);

-- One row per tick that started an execution: the key makes a tick start exactly one,
-- whichever scheduler got there first.
CREATE TABLE trigger_ticks (
    namespace    TEXT    NOT NULL,
    flow_id      TEXT    NOT NULL,
    trigger_id   TEXT    NOT NULL,
    scheduled_at REAL    NOT NULL,
    execution_id INTEGER NOT NULL,
    created_at   REAL    NOT NULL,
    PRIMARY KEY (namespace, flow_id, trigger_id, scheduled_at)
);
CREATE INDEX trigger_ticks_execution ON trigger_ticks (execution_id);

-- Named leases: the scheduler's and the notifier's leader among many servers.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    read_only    INTEGER NOT NULL,
    created_at   REAL    NOT NULL,
    last_used_at REAL,
    revoked_at   REAL
);
CREATE UNIQUE INDEX api_tokens_name ON api_tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    received_at REAL NOT NULL,
    executions  TEXT NOT NULL
);
CREATE INDEX events_received ON events (received_at);

-- One row per notification sent (or tried) for an execution's end.
CREATE TABLE notifications (
    id           INTEGER PRIMARY KEY,
    execution_id INTEGER NOT NULL,
    ended_at     REAL    NOT NULL,
    target       TEXT    NOT NULL,
    ok           INTEGER NOT NULL,
    error        TEXT,
    sent_at      REAL    NOT NULL
);
CREATE UNIQUE INDEX notifications_once ON notifications (execution_id, ended_at, target);

ALTER TABLE executions ADD COLUMN idempotency_key TEXT;
ALTER TABLE executions ADD COLUMN started_by TEXT;
CREATE UNIQUE INDEX executions_idempotency ON executions (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX executions_ended ON executions (ended_at, id) WHERE ended_at IS NOT NULL;
