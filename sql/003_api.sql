-- 003_api: what the complete REST API needs: who made each change (history),
-- Live Activity tokens, push-to-start tokens, and an index per list filter.

-- History: every outbox event records who caused it and why.
ALTER TABLE events
    ADD COLUMN actor text,
    ADD COLUMN cause jsonb CHECK (cause IS NULL OR jsonb_typeof(cause) = 'object');

-- GET /activities filters by category too (user_id and state have theirs).
CREATE INDEX activities_tenant_category_created
    ON activities (tenant_id, category, created_at DESC, id DESC);

-- Push-to-start token of a device (iOS 17.2+ ActivityKit): lets the server
-- start a Live Activity on it.
ALTER TABLE devices
    ADD COLUMN push_to_start_token text
        CHECK (push_to_start_token IS NULL
               OR (push_to_start_token ~ '^[0-9a-fA-F]+$' AND length(push_to_start_token) <= 4096)),
    ADD COLUMN push_to_start_updated_at timestamptz;

-- The push token of a running Live Activity, per activity and device. APNs
-- may rotate it: a new one replaces the old (upsert on activity + device).
CREATE TABLE live_activity_tokens (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    capsule_id  text NOT NULL,
    device_id   bigint NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    push_token  text NOT NULL
                CHECK (push_token ~ '^[0-9a-fA-F]+$' AND length(push_token) <= 4096),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, capsule_id, device_id),
    FOREIGN KEY (tenant_id, capsule_id) REFERENCES activities (tenant_id, capsule_id)
);
CREATE INDEX live_activity_tokens_capsule ON live_activity_tokens (tenant_id, capsule_id) WHERE active;

ALTER TABLE live_activity_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON live_activity_tokens
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());

GRANT SELECT, INSERT, UPDATE, DELETE ON live_activity_tokens TO capsule_app;
GRANT USAGE ON SEQUENCE live_activity_tokens_id_seq TO capsule_app;
