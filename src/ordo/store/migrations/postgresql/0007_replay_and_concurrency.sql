-- ordo replay: the execution a replay was made from.
ALTER TABLE executions ADD COLUMN original_id BIGINT;
CREATE INDEX executions_original ON executions (original_id) WHERE original_id IS NOT NULL;

-- Task concurrency keys: task runs sharing a key run at most the task's limit at once,
-- whatever their execution; ready rows carry the key so that claims can tell them apart.
ALTER TABLE task_runs ADD COLUMN concurrency_key TEXT;
ALTER TABLE ready ADD COLUMN concurrency_key TEXT;
CREATE INDEX task_runs_concurrency ON task_runs (concurrency_key, state)
    WHERE concurrency_key IS NOT NULL;
CREATE INDEX ready_concurrency ON ready (concurrency_key, not_before, task_run_id)
    WHERE concurrency_key IS NOT NULL;
