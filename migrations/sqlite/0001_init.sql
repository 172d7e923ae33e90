-- OPMAS hub schema, SQLite. Times are unix milliseconds (UTC).

-- Enrolled routers. The secret is kept in the clear because the hub needs it
-- to verify each envelope's HMAC tag (a symmetric key cannot be stored as a
-- hash); the data directory is created 0700 for that reason.
CREATE TABLE devices (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    secret        TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    -- 'never' until the first message, then 'online' / 'offline'.
    status        TEXT NOT NULL DEFAULT 'never',
    status_ms     INTEGER,
    last_seen_ms  INTEGER,
    -- The run epoch of the edge's last heartbeat or finding batch.
    epoch         INTEGER,
    -- The last heartbeat, as JSON, for the API.
    heartbeat     TEXT
);

-- Findings, unique per (device, epoch, seq): a resend is not a duplicate.
CREATE TABLE findings (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    epoch        INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    agent        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    severity     INTEGER NOT NULL CHECK (severity BETWEEN 1 AND 5),
    src_ip       TEXT,
    mac          TEXT,
    iface        TEXT,
    user         TEXT,
    service      TEXT,
    count        INTEGER NOT NULL,
    first_ms     INTEGER NOT NULL,
    last_ms      INTEGER NOT NULL,
    summary      TEXT NOT NULL,
    -- JSON array of strings.
    evidence     TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    UNIQUE (device_id, epoch, seq)
);
CREATE INDEX findings_by_device ON findings (device_id, id);
CREATE INDEX findings_by_kind ON findings (kind, id);
CREATE INDEX findings_by_last ON findings (last_ms);

-- API bearer tokens, stored as SHA-256 so that a copy of the database does
-- not hand out API access.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    token_sha256  TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    created_ms    INTEGER NOT NULL
);
