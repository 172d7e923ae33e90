-- The open findings of a device, for closing those of a run that ended
-- (the edge restarted: its open attacks and campaigns will get no more
-- updates).
CREATE INDEX findings_open ON findings (device_id) WHERE open = 1;
