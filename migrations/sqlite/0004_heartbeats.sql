-- Heartbeats as columns instead of the wire type serialised to JSON, so that
-- a change of the wire format cannot silently change what is stored or what
-- the API serves. Every heartbeat is kept for a day (the presence sweep
-- deletes older ones): the latest is the device's health, the rest its
-- history.
CREATE TABLE heartbeats (
    device_id         TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    received_ms       INTEGER NOT NULL,
    epoch             INTEGER NOT NULL,
    uptime_s          INTEGER NOT NULL,
    version           TEXT NOT NULL,
    config_version    INTEGER NOT NULL,
    spool_depth       INTEGER NOT NULL,
    spool_bytes       INTEGER NOT NULL,
    spool_budget      INTEGER NOT NULL,
    spool_dropped     INTEGER NOT NULL,
    spool_acked_upto  INTEGER NOT NULL,
    lines             INTEGER NOT NULL,
    unparsed          INTEGER NOT NULL,
    shed              INTEGER NOT NULL,
    truncated         INTEGER NOT NULL,
    findings          INTEGER NOT NULL,
    load_milli        INTEGER,
    rss_kib           INTEGER
);
CREATE INDEX heartbeats_by_device ON heartbeats (device_id, received_ms);
CREATE INDEX heartbeats_by_time ON heartbeats (received_ms);

-- Each agent's state and counters as of the device's latest heartbeat.
CREATE TABLE device_agents (
    device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    events      INTEGER NOT NULL,
    findings    INTEGER NOT NULL,
    evicted     INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (device_id, name)
) WITHOUT ROWID;

-- The JSON column is no longer read or written. It stays, empty: SQLite's
-- DROP COLUMN fails on this table, whose definition has comments in it. A
-- device's health returns with its next heartbeat.
UPDATE devices SET heartbeat = NULL;
