-- When the hub stored an incident, by its own clock: with the time of the
-- finding that completed it (the `opened` event's at_ms), the correlation
-- latency that scripts/bench-correlate.sh reports.
ALTER TABLE incidents ADD COLUMN opened_ms INTEGER;
