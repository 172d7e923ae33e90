-- Tags on devices (site, role, anything): they select devices for
-- configuration layers now, alert routes and playbook targets later. A
-- device's tags are ordered: a later tag's configuration layer overrides an
-- earlier one's.
CREATE TABLE device_tags (
    device_id  TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (device_id, tag)
);
CREATE INDEX device_tags_by_tag ON device_tags (tag, device_id);
