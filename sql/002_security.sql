-- 002_security: tenant isolation enforced by PostgreSQL, API keys, audit log,
-- idempotency keys.
--
-- The programs connect as a login role that is a member of capsule_app: it
-- neither owns the tables nor bypasses row-level security. Every transaction
-- names its tenant with set_config('capsule.tenant', <tenant>, true) (SET LOCAL);
-- without it a query sees no tenant rows at all. The owner (who runs the
-- migrations and capsule-admin) is not subject to the policies.
--
-- Creating capsule_app needs CREATEROLE; a DBA may create it beforehand
-- (CREATE ROLE capsule_app NOLOGIN NOBYPASSRLS) and grant it to the login role.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'capsule_app') THEN
        CREATE ROLE capsule_app NOLOGIN NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    -- Roles are per cluster: another database's migration made it meanwhile.
    NULL;
END
$$;

-- The tenant of the current transaction, NULL when none is set.
CREATE FUNCTION capsule_current_tenant() RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('capsule.tenant', true), '') $$;

-- API keys: only the SHA-256 of the secret is stored.
CREATE TABLE api_keys (
    key_id       text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'publisher', 'admin')),
    secret_hash  text NOT NULL CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

-- Append-only record of every state-changing request.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    actor       text NOT NULL,
    actor_kind  text NOT NULL CHECK (actor_kind IN ('jwt', 'api_key', 'system')),
    role        text NOT NULL,
    action      text NOT NULL,
    target      text,
    request_id  text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    status      integer NOT NULL,
    detail      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_tenant_created ON audit_log (tenant_id, created_at DESC, id DESC);
CREATE INDEX audit_log_tenant_actor ON audit_log (tenant_id, actor, created_at DESC);

CREATE FUNCTION audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Idempotency-Key: one stored answer per (tenant, credential, key) for 24 h.
CREATE TABLE idempotency_keys (
    tenant_id     text NOT NULL REFERENCES tenants (tenant_id),
    actor         text NOT NULL,
    idem_key      text NOT NULL CHECK (length(idem_key) BETWEEN 1 AND 255),
    method        text NOT NULL,
    path          text NOT NULL,
    request_hash  text NOT NULL,
    status        integer,
    response_body text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, actor, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Row-level security on every tenant table.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (tenant_id = capsule_current_tenant());
ALTER TABLE activities ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON activities
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());
ALTER TABLE actions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON actions
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());
ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON devices
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (tenant_id = capsule_current_tenant()) WITH CHECK (tenant_id = capsule_current_tenant());

-- The questions that must be asked across tenants. Each runs as the owner
-- (SECURITY DEFINER) and does exactly one narrow thing.

-- An API key by its public id (the caller compares the secret's hash).
CREATE FUNCTION capsule_api_key_lookup(p_key_id text)
    RETURNS TABLE (tenant_id text, role text, secret_hash text,
                   expired boolean, revoked boolean)
    LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        UPDATE api_keys k SET last_used_at = now()
         WHERE k.key_id = p_key_id
           AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')
           AND k.revoked_at IS NULL;
        SELECT k.tenant_id, k.role, k.secret_hash,
               (k.expires_at IS NOT NULL AND k.expires_at <= now()),
               (k.revoked_at IS NOT NULL)
          FROM api_keys k WHERE k.key_id = p_key_id;
    $$;

-- Tenants that have committed events not yet on the Redis stream (the relay
-- then works tenant by tenant under the policies).
CREATE FUNCTION capsule_unpublished_tenants(p_min_age_s integer)
    RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT DISTINCT e.tenant_id FROM events e
         WHERE e.published_at IS NULL
           AND e.created_at < now() - make_interval(secs => p_min_age_s)
    $$;

-- Idempotency keys past their 24 hours, of every tenant (push-daemon calls it).
CREATE FUNCTION capsule_purge_idempotency_keys()
    RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        WITH gone AS (DELETE FROM idempotency_keys
                       WHERE created_at < now() - interval '24 hours' RETURNING 1)
        SELECT count(*) FROM gone
    $$;

REVOKE ALL ON FUNCTION capsule_purge_idempotency_keys() FROM PUBLIC;
REVOKE ALL ON FUNCTION capsule_api_key_lookup(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION capsule_unpublished_tenants(integer) FROM PUBLIC;

GRANT USAGE ON SCHEMA public TO capsule_app;
GRANT SELECT ON tenants TO capsule_app;
GRANT SELECT, INSERT, UPDATE ON activities, actions, events TO capsule_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON devices, idempotency_keys TO capsule_app;
GRANT SELECT, INSERT ON audit_log TO capsule_app;
GRANT SELECT ON api_keys TO capsule_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO capsule_app;
GRANT EXECUTE ON FUNCTION capsule_current_tenant() TO capsule_app;
GRANT EXECUTE ON FUNCTION capsule_api_key_lookup(text) TO capsule_app;
GRANT EXECUTE ON FUNCTION capsule_unpublished_tenants(integer) TO capsule_app;
GRANT EXECUTE ON FUNCTION capsule_purge_idempotency_keys() TO capsule_app;
