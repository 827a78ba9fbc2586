-- IP allow/deny lists (issue 17): per key, and one global deny list beside the enforcement flag.
-- Empty arrays mean "no list". cidr keeps them valid and lets PostgreSQL normalise them.

ALTER TABLE athena.api_keys
    ADD COLUMN ip_allowlist cidr[] NOT NULL DEFAULT '{}',
    ADD COLUMN ip_denylist  cidr[] NOT NULL DEFAULT '{}';

ALTER TABLE athena.api_key_config
    ADD COLUMN ip_denylist cidr[] NOT NULL DEFAULT '{}';
