-- An execution's run options: what "run with options" set for that run only, as JSON
-- ({"retry": {attempts, delay, backoff}, "timeout": seconds, "notify": [rules]}); NULL:
-- none. Its scope: the namespaces its starter's token was limited to, as a JSON list
-- (its children inherit it, and may start flows only there); NULL: every namespace.
ALTER TABLE executions ADD COLUMN options TEXT;
ALTER TABLE executions ADD COLUMN scope TEXT;
