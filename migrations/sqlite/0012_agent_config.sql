-- Agent configuration, the database being its source of truth. Layers hold
-- only what an administrator set (sparse overrides); everything else comes
-- from the defaults compiled from opmas-proto's schema (the same values as
-- config/agents/*.yaml), so a key an upgrade adds is merged in without
-- touching what was changed. Scopes: 'fleet' and 'device:<id>'.
CREATE TABLE agent_config (
    scope    TEXT NOT NULL,
    agent    TEXT NOT NULL,
    -- NULL: as the layer below.
    enabled  INTEGER,
    -- JSON object of parameter overrides.
    params   TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (scope, agent)
);

-- Every change, with who and when; its id is the configuration version a
-- device runs (the highest id of the changes that apply to it).
CREATE TABLE config_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    scope       TEXT NOT NULL,
    agent       TEXT NOT NULL,
    -- The layer before and after, as JSON ({"enabled": ..., "params": {...}}).
    before      TEXT,
    after       TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    changed_ms  INTEGER NOT NULL
);
CREATE INDEX config_changes_by_scope ON config_changes (scope, id);

-- Why a device refused its last configuration, from its heartbeat.
ALTER TABLE heartbeats ADD COLUMN config_error TEXT;
