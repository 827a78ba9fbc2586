-- Client catalog (issue 6): every gateway polls athena.athena_clients and applies changes.
-- Keep updated_at truthful even for edits made with plain SQL by an operator, so "what changed
-- when" in the catalog can be trusted; last_seen/last_synced bookkeeping does not count.

CREATE OR REPLACE FUNCTION athena.athena_clients_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.pg_uri, NEW.pg_uri_env_var, NEW.config_uri_template, NEW.description, NEW.source,
        NEW.is_active, NEW.is_frozen, NEW.deleted_at, NEW.metadata)
       IS DISTINCT FROM
       (OLD.pg_uri, OLD.pg_uri_env_var, OLD.config_uri_template, OLD.description, OLD.source,
        OLD.is_active, OLD.is_frozen, OLD.deleted_at, OLD.metadata)
    THEN
        NEW.updated_at := greatest(now(), OLD.updated_at);
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS athena_clients_touch ON athena.athena_clients;
CREATE TRIGGER athena_clients_touch BEFORE UPDATE ON athena.athena_clients
    FOR EACH ROW EXECUTE FUNCTION athena.athena_clients_touch();

CREATE INDEX IF NOT EXISTS athena_clients_updated_at_idx ON athena.athena_clients (updated_at);
