-- 005_ws_resume: what resuming WebSocket clients need (issue 5): the event
-- log ordered by stream position, and a cursor per (tenant, subject, device).

-- The numeric position of a published event, from its Redis stream id
-- "<ms>-<seq>": NULL while unpublished, and for an id of any other shape or
-- out of bigint range (never history then). Row comparison on
-- (stream_ms, stream_seq) is the stream's order.
ALTER TABLE events
    ADD COLUMN stream_ms bigint GENERATED ALWAYS AS (
        CASE WHEN stream_id ~ '^[0-9]{1,20}-[0-9]{1,20}$' THEN
            CASE WHEN split_part(stream_id, '-', 1)::numeric <= 9223372036854775807
                  AND split_part(stream_id, '-', 2)::numeric <= 9223372036854775807
                 THEN split_part(stream_id, '-', 1)::bigint END
        END) STORED,
    ADD COLUMN stream_seq bigint GENERATED ALWAYS AS (
        CASE WHEN stream_id ~ '^[0-9]{1,20}-[0-9]{1,20}$' THEN
            CASE WHEN split_part(stream_id, '-', 1)::numeric <= 9223372036854775807
                  AND split_part(stream_id, '-', 2)::numeric <= 9223372036854775807
                 THEN split_part(stream_id, '-', 2)::bigint END
        END) STORED;
CREATE INDEX events_tenant_stream ON events (tenant_id, stream_ms, stream_seq)
    WHERE stream_ms IS NOT NULL;

-- The newest position a device acknowledged. subject is a user id or
-- "agent:<agent_id>"; device a device token, "" for agents. Only moves
-- forward (cg_history_cursor_advance).
CREATE TABLE ws_cursors (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    subject     text NOT NULL CHECK (length(subject) BETWEEN 1 AND 512),
    device      text NOT NULL CHECK (length(device) <= 4096),
    stream_ms   bigint NOT NULL CHECK (stream_ms >= 0),
    stream_seq  bigint NOT NULL CHECK (stream_seq >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, subject, device)
);

ALTER TABLE ws_cursors ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ws_cursors
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());

GRANT SELECT, INSERT, UPDATE ON ws_cursors TO capsule_app;
