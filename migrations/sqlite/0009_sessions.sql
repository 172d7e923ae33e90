-- Browser sessions, kept on the server so that signing out or expiry
-- really ends one. The cookie holds a random token; only its SHA-256 is
-- stored. Each session has its own CSRF token for state-changing requests.
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_ms);
