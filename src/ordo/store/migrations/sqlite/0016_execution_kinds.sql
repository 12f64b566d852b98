-- Every execution has a kind: FLOW (a flow of tasks) or SCRIPT (a single script or
-- handler run directly, e.g. `ordo run job.py` when the file defines handler).
ALTER TABLE executions ADD COLUMN kind TEXT NOT NULL DEFAULT 'FLOW';
CREATE INDEX executions_kind ON executions (kind, id);
