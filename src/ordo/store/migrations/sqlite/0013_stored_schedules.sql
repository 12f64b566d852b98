-- Schedules kept in the store beside a flow's own triggers (the schedule helper,
-- ordo schedules add, POST /api/schedules): each starts its flow on a cron expression
-- read in its time zone, with its inputs, while active.
CREATE TABLE flow_schedules (
    id         INTEGER PRIMARY KEY,
    namespace  TEXT    NOT NULL,
    flow_id    TEXT    NOT NULL,
    cron       TEXT    NOT NULL,
    timezone   TEXT    NOT NULL,
    inputs     TEXT    NOT NULL,
    active     INTEGER NOT NULL,
    created_by TEXT,
    created_at REAL    NOT NULL,
    updated_at REAL    NOT NULL
);
CREATE INDEX flow_schedules_flow ON flow_schedules (namespace, flow_id, id);
