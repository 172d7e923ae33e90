-- Whether a finding is still open: the edge reports an attack or campaign
-- as one finding, updated while it lasts and closed after a quiet period
-- (`Stage::Closed`). Findings stored before edges reported that are history:
-- closed.
ALTER TABLE findings ADD COLUMN open INTEGER NOT NULL DEFAULT 1;
UPDATE findings SET open = 0;
