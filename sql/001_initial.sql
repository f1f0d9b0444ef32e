-- 001_initial: tenants, activities, actions, devices and the events outbox.
-- Every table carries tenant_id from the start; one tenant ('default') until
-- callers carry their own (security issue).

CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY CHECK (tenant_id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (tenant_id, name) VALUES ('default', 'Default tenant');

CREATE TABLE activities (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    activity_id text NOT NULL CHECK (length(activity_id) BETWEEN 1 AND 255),
    capsule_id  text NOT NULL CHECK (length(capsule_id) BETWEEN 1 AND 255),
    title       text NOT NULL CHECK (length(title) >= 1), -- bound: max_title_chars
    message     text NOT NULL DEFAULT '',
    state       text NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'investigating', 'mitigating', 'approved',
                                 'rejected', 'dismissed', 'resolved')),
    priority    text NOT NULL DEFAULT 'medium'
                CHECK (priority IN ('low', 'medium', 'high', 'critical')),
    category    text,
    user_id     text,
    resolution  text,
    metadata    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    version     integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, capsule_id),
    UNIQUE (tenant_id, activity_id)
);
CREATE INDEX activities_tenant_created ON activities (tenant_id, created_at DESC, id DESC);
CREATE INDEX activities_tenant_user_created ON activities (tenant_id, user_id, created_at DESC, id DESC);
CREATE INDEX activities_tenant_state_created ON activities (tenant_id, state, created_at DESC, id DESC);

CREATE TABLE actions (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    action_id   text NOT NULL,
    capsule_id  text NOT NULL,
    action_type text NOT NULL
                CHECK (action_type IN ('mitigate', 'inspect', 'dismiss', 'approve', 'reject')),
    user_id     text,
    result      text NOT NULL DEFAULT 'success',
    metadata    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, action_id),
    FOREIGN KEY (tenant_id, capsule_id) REFERENCES activities (tenant_id, capsule_id)
);
CREATE INDEX actions_tenant_capsule ON actions (tenant_id, capsule_id, created_at);

-- Push targets. An iOS device token is hex; 'environment' says which APNs
-- host it belongs to. 'active' goes false when APNs reports it gone.
CREATE TABLE devices (
    id           bigserial PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    user_id      text NOT NULL,
    platform     text NOT NULL CHECK (platform IN ('ios', 'web')),
    device_token text NOT NULL CHECK (length(device_token) BETWEEN 1 AND 4096),
    environment  text NOT NULL DEFAULT 'production' CHECK (environment IN ('production', 'sandbox')),
    app_version  text,
    os_version   text,
    active       boolean NOT NULL DEFAULT true,
    last_seen    timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deactivated_at timestamptz,
    deactivated_reason text,
    UNIQUE (tenant_id, platform, device_token)
);
CREATE INDEX devices_tenant_user ON devices (tenant_id, user_id) WHERE active;

-- The transactional outbox: written in the same transaction as the change it
-- describes; published_at is set once the event is on the Redis stream. The
-- relay republishes rows left unpublished by a crashed writer.
CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    type        text NOT NULL,
    capsule_id  text,
    user_id     text,
    version     integer NOT NULL DEFAULT 0,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    stream_id   text
);
CREATE INDEX events_unpublished ON events (id) WHERE published_at IS NULL;
CREATE INDEX events_tenant_capsule ON events (tenant_id, capsule_id, id);
