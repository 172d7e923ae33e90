-- People who sign in to the hub, with one role each. Passwords are stored
-- as argon2id hashes (PHC strings) only. API tokens may belong to a user
-- and then carry that user's role; the admin token of the first start
-- belongs to no user and keeps the admin role.
CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    role                TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    password_hash       TEXT NOT NULL,
    created_ms          INTEGER NOT NULL,
    password_changed_ms INTEGER NOT NULL
);
ALTER TABLE api_tokens ADD COLUMN user_id INTEGER REFERENCES users(id) ON DELETE CASCADE;
