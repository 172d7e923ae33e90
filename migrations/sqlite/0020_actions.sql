-- The audit log of actions on routers: who or what asked (a user, a
-- playbook on a finding or an incident), what, on which routers, how it was
-- decided, and (through the commands it made) how each router answered.
CREATE TABLE actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms  INTEGER NOT NULL,
    -- `user:alice`, `token:ci`, `playbook:block-bruteforce`.
    created_by  TEXT NOT NULL,
    -- The action as JSON (opmas_proto::msg::Action).
    action      TEXT NOT NULL,
    -- The targets as asked ({"devices": [...]}, {"tag": "..."}, {"all": true},
    -- or a playbook's list such as ["reporting", "tag:edge"]).
    targets     TEXT NOT NULL,
    -- The routers those targets named when it was decided (JSON array).
    devices     TEXT NOT NULL DEFAULT '[]',
    -- sent: commands went to the routers; awaiting_approval: a person must
    -- approve first; rejected: a person refused it; dry_run: recorded, not
    -- sent; skipped: a playbook matched but may not act (the reason says why).
    state       TEXT NOT NULL DEFAULT 'sent'
                CHECK (state IN ('sent', 'awaiting_approval', 'rejected', 'dry_run', 'skipped')),
    reason      TEXT,
    comment     TEXT,
    playbook    TEXT,
    finding_id  INTEGER,
    incident_id INTEGER,
    -- Who approved or rejected it, and when.
    decided_by  TEXT,
    decided_ms  INTEGER,
    -- The action this one takes back (an unblock's block).
    undo_of     INTEGER REFERENCES actions(id),
    -- How long after it was sent the hub takes it back by itself (a
    -- playbook's undo_after).
    undo_after_ms INTEGER
);
CREATE INDEX actions_by_undo ON actions (undo_of) WHERE undo_of IS NOT NULL;
CREATE INDEX actions_undo_due ON actions (id) WHERE undo_after_ms IS NOT NULL AND state = 'sent';
CREATE INDEX actions_by_playbook ON actions (playbook, created_ms) WHERE playbook IS NOT NULL;
CREATE INDEX actions_by_state ON actions (state, id);

-- The commands an action made, one per router.
CREATE TABLE action_commands (
    action_id   INTEGER NOT NULL REFERENCES actions(id) ON DELETE CASCADE,
    command_id  INTEGER NOT NULL REFERENCES commands(id) ON DELETE CASCADE,
    PRIMARY KEY (action_id, command_id)
);
CREATE INDEX action_commands_by_command ON action_commands (command_id);

-- Playbooks, as the administrator wrote them (JSON of act::playbook::PlaybookSpec).
-- Seeded from config/playbooks/*.yaml like rules: a deleted one stays deleted.
CREATE TABLE playbooks (
    name        TEXT PRIMARY KEY NOT NULL,
    spec        TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    updated_by  TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL
);

-- How far playbooks have read: the last finding and incident event judged.
-- Committed with the actions they decided, so none is decided twice.
CREATE TABLE act_cursor (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    finding_id      INTEGER NOT NULL,
    incident_event  INTEGER NOT NULL
);
