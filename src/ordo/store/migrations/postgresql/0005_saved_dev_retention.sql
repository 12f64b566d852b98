-- ordo executions save: a saved execution has a unique name, an optional description and
-- the time it was saved. ordo gc never deletes it (nor the tree it belongs to).

ALTER TABLE executions ADD COLUMN saved_name TEXT;
ALTER TABLE executions ADD COLUMN saved_description TEXT;
ALTER TABLE executions ADD COLUMN saved_at DOUBLE PRECISION;
CREATE UNIQUE INDEX executions_saved_name ON executions (saved_name)
    WHERE saved_name IS NOT NULL;

-- ordo run --dev: a dev execution (its child executions inherit it) is kept for
-- retention.dev_days instead of retention.days.
ALTER TABLE executions ADD COLUMN dev BIGINT NOT NULL DEFAULT 0;

-- ordo gc: the ended root executions that are not saved, by dev flag and end time.
CREATE INDEX executions_retention ON executions (dev, ended_at, id)
    WHERE parent_id IS NULL AND saved_name IS NULL AND ended_at IS NOT NULL;
