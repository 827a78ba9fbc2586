-- The Athena catalog: everything two gateway instances must agree on.
-- Lives in its own database (athena_catalog by default), schema "athena".

CREATE SCHEMA IF NOT EXISTS athena;

-- API keys: only a salt and sha256(salt:secret) are stored, never the secret.
CREATE TABLE athena.api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    public_id    text NOT NULL UNIQUE,
    name         text NOT NULL,
    description  text,
    client_name  text,
    key_salt     text NOT NULL,
    key_hash     text NOT NULL,
    expires_at   timestamptz,
    is_active    boolean NOT NULL DEFAULT true,
    last_used_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE athena.api_key_rights (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE athena.api_key_right_grants (
    api_key_id uuid NOT NULL REFERENCES athena.api_keys(id) ON DELETE CASCADE,
    right_id   uuid NOT NULL REFERENCES athena.api_key_rights(id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, right_id)
);

-- One row: the global enforcement flag. Its initial value comes from ATHENA_ENFORCE_API_KEYS.
CREATE TABLE athena.api_key_config (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    enforce_api_keys boolean NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE athena.api_key_client_config (
    client_name      text PRIMARY KEY,
    enforce_api_keys boolean NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE athena.athena_clients (
    id                         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_name                text NOT NULL UNIQUE,
    description                text,
    pg_uri                     text,
    pg_uri_env_var             text,
    config_uri_template        text,
    source                     text NOT NULL DEFAULT 'database',
    is_active                  boolean NOT NULL DEFAULT true,
    is_frozen                  boolean NOT NULL DEFAULT false,
    last_synced_from_config_at timestamptz,
    last_seen_at               timestamptz,
    metadata                   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    deleted_at                 timestamptz
);

CREATE TABLE athena.client_statistics (
    client_name           text PRIMARY KEY,
    total_requests        bigint NOT NULL DEFAULT 0,
    successful_requests   bigint NOT NULL DEFAULT 0,
    failed_requests       bigint NOT NULL DEFAULT 0,
    total_cached_requests bigint NOT NULL DEFAULT 0,
    total_operations      bigint NOT NULL DEFAULT 0,
    last_request_at       timestamptz,
    last_operation_at     timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE athena.client_table_statistics (
    client_name       text NOT NULL,
    table_name        text NOT NULL,
    operation         text NOT NULL,
    total_operations  bigint NOT NULL DEFAULT 0,
    error_operations  bigint NOT NULL DEFAULT 0,
    last_operation_at timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_name, table_name, operation)
);

CREATE TABLE athena.gateway_request_log (
    id                bigserial PRIMARY KEY,
    created_at        timestamptz NOT NULL DEFAULT now(),
    request_id        text,
    client_name       text,
    route             text NOT NULL,
    method            text NOT NULL,
    table_name        text,
    operation         text,
    status_code       integer NOT NULL,
    duration_ms       double precision NOT NULL,
    cached            boolean NOT NULL DEFAULT false,
    api_key_public_id text,
    user_id           text,
    company_id        text,
    organization_id   text,
    error_code        text,
    remote_addr       text
);
CREATE INDEX gateway_request_log_created_at_idx ON athena.gateway_request_log (created_at);
CREATE INDEX gateway_request_log_client_idx ON athena.gateway_request_log (client_name, created_at);

-- Registries: rows are free-form JSON documents, served as-is by /registry and /router/registry.
CREATE TABLE athena.api_registry (
    id         text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    name       text,
    document   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE athena.router_registry (
    id         text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    name       text,
    document   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE athena.backup_jobs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind        text NOT NULL CHECK (kind IN ('backup', 'restore')),
    client_name text NOT NULL,
    state       text NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    phase       text,
    bytes       bigint NOT NULL DEFAULT 0,
    backup_key  text,
    label       text,
    error       text,
    result      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX backup_jobs_created_at_idx ON athena.backup_jobs (created_at DESC);

-- Published events whose payload is too large for NOTIFY: the notification carries the id.
CREATE TABLE athena.event_outbox (
    id         bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    payload    jsonb NOT NULL
);
CREATE INDEX event_outbox_created_at_idx ON athena.event_outbox (created_at);
