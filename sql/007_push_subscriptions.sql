-- 007_push_subscriptions: Web Push subscriptions of browsers (issue 6): the
-- PushSubscription a browser handed to POST /api/v1/push/subscribe, per user
-- of a tenant, for push-daemon to deliver to (RFC 8030/8291/8292).
--
-- One row per (tenant, endpoint): a browser subscribing the same endpoint
-- again (new keys, or another user signed in on it) replaces the row. The
-- keys are stored base64url without padding, as cg_pushsub normalised them
-- (p256dh: a 65-byte uncompressed P-256 point, auth: 16 bytes). push-daemon
-- DELETES a subscription the push service answers 404/410 for (PUSH.md B2);
-- 'active' and deactivated_* are kept for a soft deactivation (an admin, a
-- future policy) and the per-user limit counts active rows only.

CREATE TABLE push_subscriptions (
    id                 bigserial PRIMARY KEY,
    tenant_id          text NOT NULL REFERENCES tenants (tenant_id),
    user_id            text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 256),
    endpoint           text NOT NULL
                       CHECK (length(endpoint) BETWEEN 9 AND 2048 AND endpoint ~* '^https://[^/?#@]'),
    p256dh             text NOT NULL CHECK (p256dh ~ '^[A-Za-z0-9_-]{87}$'),
    auth               text NOT NULL CHECK (auth ~ '^[A-Za-z0-9_-]{22}$'),
    user_agent         text CHECK (user_agent IS NULL OR char_length(user_agent) <= 512),
    device_info        jsonb CHECK (device_info IS NULL
                                    OR (jsonb_typeof(device_info) = 'object'
                                        AND octet_length(device_info::text) <= 8192)),
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    last_seen          timestamptz NOT NULL DEFAULT now(),
    deactivated_at     timestamptz,
    deactivated_reason text CHECK (deactivated_reason IS NULL OR length(deactivated_reason) <= 256),
    UNIQUE (tenant_id, endpoint)
);
-- The subscriptions of a user (the list, the limit, push-daemon's fan-out).
CREATE INDEX push_subscriptions_tenant_user ON push_subscriptions (tenant_id, user_id) WHERE active;

ALTER TABLE push_subscriptions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON push_subscriptions
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());

GRANT SELECT, INSERT, UPDATE, DELETE ON push_subscriptions TO capsule_app;
GRANT USAGE ON SEQUENCE push_subscriptions_id_seq TO capsule_app;
