-- Routers reached over SSH instead of an OPMAS agent: where, as whom, and
-- the host key pinned when the router was enrolled (OpenSSH public-key
-- line). The hub's commands to such a device run over SSH
-- (hub/src/act/ssh.rs); a host key that differs is refused.
CREATE TABLE device_ssh (
    device_id   TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    host        TEXT NOT NULL,
    port        INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    user        TEXT NOT NULL,
    host_key    TEXT NOT NULL,
    -- Services restart_service may restart there (JSON array).
    services    TEXT NOT NULL,
    enrolled_ms INTEGER NOT NULL
);
