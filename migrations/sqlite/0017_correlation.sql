-- Correlation rules, as the administrator wrote them (JSON of
-- correlate::rule::RuleSpec). Seeded from config/rules/*.yaml: a name
-- seeded once is never seeded again, so a deleted rule stays deleted
-- (its row is kept with deleted = 1).
CREATE TABLE rules (
    name        TEXT PRIMARY KEY NOT NULL,
    spec        TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    updated_by  TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL
);

-- Incidents: findings of several agents and routers that a rule joined.
-- One per rule and key while it is not resolved (the partial index), so a
-- campaign updates its incident instead of opening another.
CREATE TABLE incidents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    rule         TEXT NOT NULL,
    -- `src_ip=203.0.113.7`, `device=gw-1`, `fleet`.
    key          TEXT NOT NULL,
    severity     INTEGER NOT NULL CHECK (severity BETWEEN 1 AND 5),
    -- open | acknowledged | resolved
    state        TEXT NOT NULL DEFAULT 'open',
    -- Why it opened, in the engine's words.
    reason       TEXT NOT NULL,
    first_ms     INTEGER NOT NULL,
    last_ms      INTEGER NOT NULL,
    findings     INTEGER NOT NULL DEFAULT 0,
    -- JSON array of device ids, sorted.
    devices      TEXT NOT NULL DEFAULT '[]',
    -- Resolves itself after this long without a new member; NULL: when
    -- the router is heard from again (absence).
    quiet_ms     INTEGER,
    changed_by   TEXT,
    changed_ms   INTEGER,
    resolved_ms  INTEGER
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (rule, key) WHERE state != 'resolved';
CREATE INDEX incidents_by_key ON incidents (key, id);
CREATE INDEX incidents_by_state ON incidents (state, id);

CREATE TABLE incident_findings (
    incident_id  INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    finding_id   INTEGER NOT NULL,
    PRIMARY KEY (incident_id, finding_id)
) WITHOUT ROWID;
CREATE INDEX incident_findings_by_finding ON incident_findings (finding_id);

-- The incident's timeline besides its findings: opened, acknowledged,
-- resolved (by whom or why), reopened, comments.
CREATE TABLE incident_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
    at_ms        INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    by           TEXT NOT NULL,
    text         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);

-- The last finding the correlator has taken: it commits this with the
-- incidents those findings made, so after a restart it goes on from here
-- with nothing taken twice or skipped.
CREATE TABLE correlator_cursor (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    finding_id  INTEGER NOT NULL
);

-- The correlator rebuilds its windows at start from the findings stored
-- in the longest window (by the hub's clock).
CREATE INDEX findings_by_received ON findings (received_ms);
