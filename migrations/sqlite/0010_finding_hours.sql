-- New findings per hour of their first event, device and agent: what the web
-- UI's charts and per-device 24-hour counts read, so that neither scans the
-- findings table. Kept by triggers, so every way a row arrives or goes
-- (a batch, an orphan update, a device removed) counts exactly once.
CREATE TABLE finding_hours (
    hour       INTEGER NOT NULL,
    device_id  TEXT NOT NULL,
    agent      TEXT NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (hour, device_id, agent)
) WITHOUT ROWID;
CREATE INDEX finding_hours_by_device ON finding_hours (device_id, hour);

-- The same, over the whole fleet: the overview's chart reads a week of it
-- (168 hours times a few agents) instead of that times every device.
CREATE TABLE fleet_hours (
    hour   INTEGER NOT NULL,
    agent  TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (hour, agent)
) WITHOUT ROWID;

INSERT INTO finding_hours (hour, device_id, agent, n)
    SELECT first_ms / 3600000, device_id, agent, COUNT(*) FROM findings GROUP BY 1, 2, 3;
INSERT INTO fleet_hours (hour, agent, n)
    SELECT hour, agent, SUM(n) FROM finding_hours GROUP BY 1, 2;

CREATE TRIGGER finding_hours_add AFTER INSERT ON findings BEGIN
    INSERT INTO finding_hours (hour, device_id, agent, n)
        VALUES (NEW.first_ms / 3600000, NEW.device_id, NEW.agent, 1)
        ON CONFLICT (hour, device_id, agent) DO UPDATE SET n = n + 1;
    INSERT INTO fleet_hours (hour, agent, n) VALUES (NEW.first_ms / 3600000, NEW.agent, 1)
        ON CONFLICT (hour, agent) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER finding_hours_remove AFTER DELETE ON findings BEGIN
    DELETE FROM finding_hours
     WHERE hour = OLD.first_ms / 3600000 AND device_id = OLD.device_id AND agent = OLD.agent AND n <= 1;
    UPDATE finding_hours SET n = n - 1
     WHERE hour = OLD.first_ms / 3600000 AND device_id = OLD.device_id AND agent = OLD.agent;
    UPDATE fleet_hours SET n = n - 1 WHERE hour = OLD.first_ms / 3600000 AND agent = OLD.agent;
END;

-- The findings page filters by severity and agent, newest first.
CREATE INDEX findings_by_agent ON findings (agent, id);
CREATE INDEX findings_by_severity ON findings (severity, id);
