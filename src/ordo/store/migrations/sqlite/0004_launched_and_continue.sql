-- When a claimed attempt was really started by its worker (claims are prefetched): an
-- attempt of a dead worker that never started is handed back, not counted as lost.

ALTER TABLE attempts ADD COLUMN launched_at REAL;

-- ordo run --continue-on-error: this execution's setting (NULL: the flow's).
ALTER TABLE executions ADD COLUMN continue_on_error INTEGER;

-- ordo restart: attempts numbered up to this one were before the restart; the retry
-- policy counts only those after it.
ALTER TABLE task_runs ADD COLUMN retries_from INTEGER NOT NULL DEFAULT 0;
