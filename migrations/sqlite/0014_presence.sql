-- Every change of a device's presence, for its timeline. Kept by a trigger,
-- so every path that changes the status (a message, its Last Will, the
-- presence sweep) is recorded once.
CREATE TABLE presence_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    status     TEXT NOT NULL,
    at_ms      INTEGER NOT NULL
);
CREATE INDEX presence_changes_by_device ON presence_changes (device_id, id);

CREATE TRIGGER presence_change AFTER UPDATE OF status ON devices
    WHEN OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO presence_changes (device_id, status, at_ms)
        VALUES (NEW.id, NEW.status, COALESCE(NEW.status_ms, NEW.last_seen_ms, 0));
END;
