-- The edge's supervisor: each agent's restarts by policy in the current
-- run and its last failure, as of the latest heartbeat.
ALTER TABLE device_agents ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE device_agents ADD COLUMN last_error TEXT;

-- Each device's own heartbeat interval (ms), from its heartbeats: the
-- presence sweep calls an online device `stale` after three of them
-- without a word (a change the presence trigger records like any other).
ALTER TABLE devices ADD COLUMN heartbeat_ms INTEGER;
