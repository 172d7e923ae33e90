-- The security agent's local response as a layer sets it: a JSON object
-- with any of local_block, local_block_for, local_kinds (NULL: none set;
-- what no layer sets stays the router's own UCI setting).
ALTER TABLE agent_config ADD COLUMN local_response TEXT;
