-- Observability state shared by every gateway instance (issue 7).

-- How far the statistics rollup has folded the request log: every row with id <= last_log_id is
-- counted in client_statistics, client_table_statistics and request_stats_hourly, and no other.
CREATE TABLE athena.statistics_rollup_state (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_log_id bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO athena.statistics_rollup_state (singleton, last_log_id) VALUES (true, 0);

-- Hourly buckets (UTC) of the request log: the 24-hour aggregates of /metrics are sums of the
-- last 24 buckets, so no scrape and no rollup ever scans a day of raw log rows.
-- client_name '-' holds requests that named no (known) client.
CREATE TABLE athena.request_stats_hourly (
    hour            timestamp NOT NULL,
    client_name     text NOT NULL,
    requests        bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    cached          bigint NOT NULL DEFAULT 0,
    duration_ms_sum double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, client_name)
);

-- Latest probe of each mirror. Every instance marks the mirrors it is configured with as wanted
-- (wanted_at); the one instance holding the probe lease probes every recently wanted URL and
-- stores the result here, so /health/cluster answers the same on every instance and worker.
CREATE TABLE athena.cluster_mirror_health (
    url                    text PRIMARY KEY,
    wanted_at              timestamptz NOT NULL DEFAULT now(),
    status                 text NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline')),
    latency_ms             double precision,
    download_bytes_per_sec double precision,
    cargo_toml_version     text,
    message                text,
    checked_at             timestamptz
);
