-- The audit log of actions on routers: who or what asked (a user, later a
-- playbook), what, on which routers, and (through the commands it made)
-- how each router answered. One row per decision; one command per router.
CREATE TABLE actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms  INTEGER NOT NULL,
    -- `user:alice`, `token:ci`, `playbook:block-bruteforce`.
    created_by  TEXT NOT NULL,
    -- The action as JSON (opmas_proto::msg::Action).
    action      TEXT NOT NULL,
    -- The targets as asked ({"devices": [...]}, {"tag": "..."}, {"all": true}).
    targets     TEXT NOT NULL,
    comment     TEXT,
    -- The action this one takes back (an unblock's block).
    undo_of     INTEGER REFERENCES actions(id)
);
CREATE INDEX actions_by_undo ON actions (undo_of) WHERE undo_of IS NOT NULL;

-- The commands an action made, one per router.
CREATE TABLE action_commands (
    action_id   INTEGER NOT NULL REFERENCES actions(id) ON DELETE CASCADE,
    command_id  INTEGER NOT NULL REFERENCES commands(id) ON DELETE CASCADE,
    PRIMARY KEY (action_id, command_id)
);
CREATE INDEX action_commands_by_command ON action_commands (command_id);
