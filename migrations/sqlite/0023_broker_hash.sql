-- The device secret as an external mosquitto's password file holds it
-- ($7$ PBKDF2 hash, see hub/src/broker/mosquitto.rs): made once per secret,
-- so rewriting the file for a fleet costs no hashing. NULL: not made yet
-- (or the secret changed since).
ALTER TABLE devices ADD COLUMN broker_hash TEXT;
