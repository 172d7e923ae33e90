-- Findings the database refused to store (a constraint or trigger failed on
-- the row). Ingest stores such a device's findings one at a time, skips the
-- refused ones, counts them here and logs each with its reason, so that one
-- bad row never holds back the device's other findings or other devices'.
-- Every sequence up to `upto` is now stored, dropped by the edge, or counted
-- here.
ALTER TABLE deliveries ADD COLUMN unstorable INTEGER NOT NULL DEFAULT 0;
