-- Delivery bookkeeping for an ack that cannot lie, and indexes that match
-- every statement the hub runs on the ingest path.

-- Per device and run epoch: every finding sequence up to `upto` is either
-- stored (a row in `findings` or `finding_updates`) or was dropped by the
-- edge from its full spool (`dropped` counts those, as the batches' `floor`
-- revealed them). Nothing above `upto` is stored. Written in the same
-- transaction as the findings it covers, so after a crash it still matches.
CREATE TABLE deliveries (
    device_id    TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    epoch        INTEGER NOT NULL,
    upto         INTEGER NOT NULL,
    dropped      INTEGER NOT NULL DEFAULT 0,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (device_id, epoch)
) WITHOUT ROWID;

-- The updates a finding received (a flood's growing count), one row per
-- update sequence: the finding's history, and the trace that the update's
-- sequence was stored.
CREATE TABLE finding_updates (
    device_id    TEXT NOT NULL,
    epoch        INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    finding_id   INTEGER NOT NULL REFERENCES findings(id) ON DELETE CASCADE,
    count        INTEGER NOT NULL,
    last_ms      INTEGER NOT NULL,
    received_ms  INTEGER NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
) WITHOUT ROWID;
CREATE INDEX finding_updates_by_finding ON finding_updates (finding_id);

-- An update finds its original by identity: agent, kind, first time and
-- subject, as one JSON key the hub computes. Without it an update scanned
-- every row of the kind (and a botnet's burst shares kind and first second).
-- Rows stored before this migration have none: an update of one of them is
-- stored as a finding of its own, as when the original never arrived.
ALTER TABLE findings ADD COLUMN identity TEXT;
CREATE INDEX findings_by_identity ON findings (device_id, epoch, identity);

-- The presence sweep looks for online devices not heard from lately.
CREATE INDEX devices_by_presence ON devices (status, last_seen_ms);
