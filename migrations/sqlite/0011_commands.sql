-- Commands the hub sent down to devices, and how each ended. The id is the
-- command id on the wire: it only grows, which the edge relies on to refuse
-- a replay (it runs an id only if it is above every id it ran before).
CREATE TABLE commands (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    -- The action as JSON (opmas_proto::msg::Action).
    action       TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    -- Who asked: a user, a token's label, or the hub itself.
    created_by   TEXT NOT NULL,
    expires_ms   INTEGER NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'done', 'failed', 'expired', 'rejected')),
    -- The edge's answer, or why the hub gave up.
    message      TEXT,
    -- Last published to the device (pending commands are sent again when
    -- it reconnects).
    sent_ms      INTEGER,
    sends        INTEGER NOT NULL DEFAULT 0,
    answered_ms  INTEGER,
    duration_ms  INTEGER
);
CREATE INDEX commands_by_device ON commands (device_id, id);
CREATE INDEX commands_pending ON commands (expires_ms) WHERE state = 'pending';
