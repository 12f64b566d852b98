-- The process group an attempt started and the machine it ran on (process_host: host
-- name, boot id and PID namespace), recorded when it launched: before a lost attempt
-- runs again, whoever takes it back on that machine stops the group (process_started:
-- its leader's start time, in clock ticks since boot, so that a reused group number is
-- told apart).
ALTER TABLE attempts ADD COLUMN process_host TEXT;
ALTER TABLE attempts ADD COLUMN process_group INTEGER;
ALTER TABLE attempts ADD COLUMN process_started INTEGER;
