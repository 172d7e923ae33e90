-- Alerting: the document (receivers, templates, routes) as JSON of
-- alert::config::AlertConfig, seeded from config/alerting.yaml.
CREATE TABLE alert_config (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    doc         TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL
);

-- The last incident_events row alerting has taken (committed with the
-- groups it changed, so a restart neither repeats nor skips a change).
CREATE TABLE alert_cursor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    event_id  INTEGER NOT NULL
);

-- Groups of incidents notified together, per route, receiver and the
-- values of the route's group_by labels.
CREATE TABLE alert_groups (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    route         TEXT NOT NULL,
    receiver      TEXT NOT NULL,
    group_key     TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    interval_ms   INTEGER NOT NULL,
    repeat_ms     INTEGER NOT NULL,
    -- When the group is looked at next; NULL: nothing to do until an incident changes.
    next_ms       INTEGER,
    last_sent_ms  INTEGER,
    -- What the last notification said (its incidents and states, hashed).
    last_digest   TEXT,
    UNIQUE (route, receiver, group_key)
);
CREATE INDEX alert_groups_due ON alert_groups (next_ms);

CREATE TABLE alert_group_incidents (
    group_id     INTEGER NOT NULL REFERENCES alert_groups(id) ON DELETE CASCADE,
    incident_id  INTEGER NOT NULL,
    -- A notification told of it firing (so its resolution is told too;
    -- one that resolved before it was ever told is dropped quietly).
    told         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, incident_id)
) WITHOUT ROWID;

-- Notifications decided and not yet delivered, and the delivered ones
-- (kept for the log). A crash between deciding and delivering leaves the
-- row pending: it is sent after the restart, not forgotten.
CREATE TABLE alert_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id         INTEGER,
    receiver         TEXT NOT NULL,
    -- JSON of alert::template::Notification.
    payload          TEXT NOT NULL,
    -- pending | sent | failed
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    last_error       TEXT,
    created_ms       INTEGER NOT NULL,
    sent_ms          INTEGER
);
CREATE INDEX alert_outbox_pending ON alert_outbox (state, next_attempt_ms);

-- Silences: incidents that match are not notified between starts and ends.
CREATE TABLE silences (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- JSON of alert::config::Match.
    matchers    TEXT NOT NULL,
    starts_ms   INTEGER NOT NULL,
    ends_ms     INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    comment     TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX silences_by_end ON silences (ends_ms);

-- Maintenance windows: silences that come back every week (UTC).
CREATE TABLE maintenance (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    matchers     TEXT NOT NULL,
    -- Comma-separated mon..sun.
    days         TEXT NOT NULL,
    -- Minutes after midnight UTC, and how long.
    start_min    INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    created_ms   INTEGER NOT NULL
);
