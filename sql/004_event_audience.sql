-- 004_event_audience: an event may be addressed to a channel or an agent
-- besides a user or the whole tenant (issue 5: channels, agents).
ALTER TABLE events
    ADD COLUMN channel text CHECK (channel IS NULL OR length(channel) BETWEEN 1 AND 256),
    ADD COLUMN agent_id text CHECK (agent_id IS NULL OR length(agent_id) BETWEEN 1 AND 255),
    ADD CONSTRAINT events_one_audience CHECK (
        (CASE WHEN user_id IS NOT NULL AND user_id <> '' THEN 1 ELSE 0 END)
        + (CASE WHEN channel IS NOT NULL THEN 1 ELSE 0 END)
        + (CASE WHEN agent_id IS NOT NULL THEN 1 ELSE 0 END) <= 1);
