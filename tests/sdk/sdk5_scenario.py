"""The data the SDK 5 wire log was recorded against (``scripts/sdk5_record.py``) and is replayed
against (``test_sdk5_replay.py``): the same schema, rows and function, so the same requests get
the same answers."""

from __future__ import annotations

TABLE = "sdk5_wire"
SCHEMA_SQL = f"""
DROP TABLE IF EXISTS {TABLE};
DROP FUNCTION IF EXISTS sdk5_wire_add(int, int);
DROP FUNCTION IF EXISTS sdk5_wire_by_owner(text);
CREATE TABLE {TABLE} (
    id serial PRIMARY KEY,
    owner text NOT NULL,
    name text NOT NULL,
    qty integer NOT NULL DEFAULT 1,
    note text,
    UNIQUE (owner, name)
);
INSERT INTO {TABLE} (owner, name, qty, note) VALUES
    ('seed', 'alpha', 1, 'first'), ('seed', 'beta', 5, NULL), ('seed', 'gamma', 9, 'x'),
    ('seed', 'delta', 12, NULL);
CREATE FUNCTION sdk5_wire_add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;
CREATE FUNCTION sdk5_wire_by_owner(who text) RETURNS SETOF {TABLE} LANGUAGE sql STABLE
    AS $$ SELECT * FROM {TABLE} WHERE owner = who ORDER BY id $$;
"""
# Rights of the recorded data key (the replay creates a key holding the same).
RIGHTS = ["sdk5_wire.*", "gateway.query", "sdk5_wire_add.execute", "sdk5_wire_by_owner.execute"]
