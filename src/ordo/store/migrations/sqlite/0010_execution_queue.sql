-- An execution's queue: every task run of the execution is queued there instead of its
-- task's own queue (the web UI's and the API's "run with options"); NULL: each task's.
ALTER TABLE executions ADD COLUMN queue TEXT;
