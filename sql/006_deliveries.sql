-- 006_deliveries: one row per push attempt target (event x device or web push
-- subscription x channel): what push-daemon sent, what the provider answered,
-- and the admin's retry requests (issue 6).
--
-- Lifecycle: push-daemon inserts a row 'pending' before it hands the push to
-- its sender (ON CONFLICT DO NOTHING, so a re-delivered stream entry finds the
-- row and skips a pair already final); the outcome makes it 'sent', 'failed'
-- or 'deactivated' (the token is dead). An admin may turn a 'failed' row into
-- 'retry_requested' (retry_requested_at says when); push-daemon then sets it
-- 'pending' and sends it again with the same apns-id. A retried row left
-- 'pending' for push_retry_recover_s (default 60 s: far longer than one
-- attempt) lost its daemon and is picked again.
--
-- Automatic retries (429, 5xx, transport errors) wait on a delayed queue in
-- Redis (the sorted set cg:pushd:retry, scored by due time): the row is
-- 'retry_due' with next_attempt_at; when it is due, any push-daemon moves it
-- to 'retry_requested' and sends it as above. A 'retry_due' row overdue by
-- more than push_retry_recover_s (Redis lost the queue) is picked from here.
-- attempt_base: the attempts an admin retry started from; the attempt limit
-- counts from there.

CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id),
    -- No foreign key to events: rows outlive a purged event log.
    event_id        uuid NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('apns', 'webpush')),
    push_type       text NOT NULL CHECK (push_type ~ '^[a-z]{1,32}$'),
    device_id       bigint REFERENCES devices (id) ON DELETE SET NULL,
    subscription_id bigint, -- web push subscriptions (later; no foreign key yet)
    -- The device token or endpoint, for the admin view (which shows a prefix).
    target          text NOT NULL CHECK (length(target) BETWEEN 1 AND 4096),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed', 'deactivated', 'retry_requested',
                                      'retry_due')),
    provider_status integer CHECK (provider_status IS NULL OR provider_status BETWEEN 0 AND 999),
    provider_reason text CHECK (provider_reason IS NULL OR length(provider_reason) <= 256),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    apns_id         uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    sent_at         timestamptz,
    retry_requested_at timestamptz,
    next_attempt_at timestamptz,
    attempt_base    integer NOT NULL DEFAULT 0 CHECK (attempt_base >= 0),
    -- NULLs are distinct: a device row constrains device pushes only, a
    -- subscription row subscription pushes only.
    UNIQUE (tenant_id, event_id, channel, push_type, device_id),
    UNIQUE (tenant_id, event_id, channel, subscription_id)
);
-- GET /api/v1/admin/deliveries: newest first, per status or not.
CREATE INDEX deliveries_tenant_status_created
    ON deliveries (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX deliveries_tenant_created ON deliveries (tenant_id, created_at DESC, id DESC);
-- push-daemon's pickup of admin retries (and of retries a dead daemon left).
CREATE INDEX deliveries_retry_requested ON deliveries (status) WHERE status = 'retry_requested';
CREATE INDEX deliveries_retry_pending ON deliveries (updated_at)
    WHERE status = 'pending' AND retry_requested_at IS NOT NULL;
CREATE INDEX deliveries_retry_due ON deliveries (next_attempt_at) WHERE status = 'retry_due';
-- ON DELETE SET NULL from devices.
CREATE INDEX deliveries_device ON deliveries (device_id) WHERE device_id IS NOT NULL;

ALTER TABLE deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON deliveries
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());

-- Tenants with retries an admin asked for, or retries a dead daemon left
-- 'pending' (push-daemon then works tenant by tenant under the policies).
-- p_recover_s: how long a 'retry_due' row may be overdue before it is taken
-- from PostgreSQL (its Redis entry was lost).
CREATE FUNCTION capsule_retry_tenants(p_recover_s integer)
    RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT d.tenant_id FROM deliveries d WHERE d.status = 'retry_requested'
        UNION
        SELECT d.tenant_id FROM deliveries d
         WHERE d.status = 'pending' AND d.retry_requested_at IS NOT NULL
           AND d.updated_at < now() - make_interval(secs => p_recover_s)
        UNION
        SELECT d.tenant_id FROM deliveries d
         WHERE d.status = 'retry_due'
           AND d.next_attempt_at < now() - make_interval(secs => p_recover_s)
    $$;
REVOKE ALL ON FUNCTION capsule_retry_tenants(integer) FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE ON deliveries TO capsule_app;
GRANT USAGE ON SEQUENCE deliveries_id_seq TO capsule_app;
GRANT EXECUTE ON FUNCTION capsule_retry_tenants(integer) TO capsule_app;
