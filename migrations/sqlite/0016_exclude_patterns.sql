-- `exclude_patterns` per agent and layer: a JSON array of patterns, or NULL
-- for "as the layer below". A layer that sets them replaces the list below.
ALTER TABLE agent_config ADD COLUMN exclude_patterns TEXT;

-- Lines an agent ignored through its patterns, as of the latest heartbeat.
ALTER TABLE device_agents ADD COLUMN excluded INTEGER NOT NULL DEFAULT 0;
