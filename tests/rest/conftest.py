"""Fixture tables for /rest/v1 (prefix ``rest_``: data_db is shared with other areas).

authors 1─n books 1─n reviews; books carry every type a filter operator needs (arrays, jsonb,
ranges, tsvector). ``rest_items`` is the scratch table that write tests change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from postgrest import SyncPostgrestClient
from support.pg import TestPostgres
from support.servers import AthenaServer

SCHEMA_SQL = """
DROP TABLE IF EXISTS rest_book_shelves, rest_shelves, rest_reviews, rest_books, rest_authors, rest_items, rest_nopk, rest_many CASCADE;
DROP SCHEMA IF EXISTS rest_extra, rest_hidden CASCADE;
DROP TABLE IF EXISTS rest_links;
CREATE TABLE rest_authors (
    id integer PRIMARY KEY,
    name text NOT NULL,
    country text
);
CREATE TABLE rest_books (
    id integer PRIMARY KEY,
    title text NOT NULL,
    author_id integer REFERENCES rest_authors(id),
    pages integer,
    price numeric(8,2),
    tags text[] NOT NULL DEFAULT '{}',
    meta jsonb,
    published date,
    during int4range,
    available boolean,
    search tsvector GENERATED ALWAYS AS (to_tsvector('english', title)) STORED
);
CREATE TABLE rest_reviews (
    id integer PRIMARY KEY,
    book_id integer NOT NULL REFERENCES rest_books(id),
    stars integer NOT NULL,
    body text
);
CREATE TABLE rest_items (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    qty integer NOT NULL DEFAULT 1,
    note text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE rest_nopk (a integer, b text);
CREATE TABLE rest_many (id integer PRIMARY KEY, label text);
INSERT INTO rest_many SELECT g, 'row ' || g FROM generate_series(1, 150) g;
CREATE SCHEMA rest_extra;
CREATE TABLE rest_extra.gadgets (id integer PRIMARY KEY, label text);
INSERT INTO rest_extra.gadgets VALUES (1, 'sprocket'), (2, 'widget');
-- a schema that is NOT exposed, reachable from public only through a foreign key
CREATE SCHEMA rest_hidden;
CREATE TABLE rest_hidden.secrets (id integer PRIMARY KEY, secret text);
INSERT INTO rest_hidden.secrets VALUES (1, 'hunter2');
CREATE TABLE rest_links (id integer PRIMARY KEY, secret_id integer REFERENCES rest_hidden.secrets(id));
INSERT INTO rest_links VALUES (1, 1);

INSERT INTO rest_authors VALUES
    (1, 'Ursula Le Guin', 'US'), (2, 'Stanisław Lem', 'PL'), (3, 'Octavia Butler', 'US'),
    (4, 'Anonymous', NULL);
INSERT INTO rest_books (id, title, author_id, pages, price, tags, meta, published, during, available) VALUES
    (1, 'The Dispossessed', 1, 387, 9.99, '{classic,utopia}', '{"lang":"en","series":{"name":"Hainish","n":6}}', '1974-05-01', '[1974,1975)', true),
    (2, 'The Left Hand of Darkness', 1, 304, 8.50, '{classic,gender}', '{"lang":"en","series":{"name":"Hainish","n":4}}', '1969-03-01', '[1969,1970)', true),
    (3, 'Solaris', 2, 204, 12.00, '{classic,ocean}', '{"lang":"pl"}', '1961-01-01', '[1961,1962)', false),
    (4, 'The Cyberiad', 2, 295, NULL, '{robots,humor}', '{"lang":"pl","series":null}', '1965-01-01', '[1965,1966)', NULL),
    (5, 'Kindred', 3, 264, 7.25, '{slavery,time travel}', '{"lang":"en"}', '1979-06-01', '[1979,1980)', true),
    (6, 'Parable of the Sower', 3, 345, 10.00, '{dystopia}', NULL, '1993-10-01', '[1993,1994)', true),
    (7, 'Untitled, "draft" (1)', NULL, NULL, NULL, '{}', NULL, NULL, NULL, NULL);
-- many-to-many: books ↔ shelves through rest_book_shelves
CREATE TABLE rest_shelves (id integer PRIMARY KEY, label text NOT NULL);
CREATE TABLE rest_book_shelves (
    book_id integer REFERENCES rest_books(id),
    shelf_id integer REFERENCES rest_shelves(id),
    PRIMARY KEY (book_id, shelf_id)
);
INSERT INTO rest_shelves VALUES (1, 'favourites'), (2, 'to read'), (3, 'lent out');
INSERT INTO rest_book_shelves VALUES (1, 1), (1, 2), (3, 1), (5, 2), (5, 3);
INSERT INTO rest_reviews VALUES
    (1, 1, 5, 'brilliant'), (2, 1, 4, 'dense'), (3, 3, 5, 'ocean!'), (4, 5, 3, NULL),
    (5, 5, 5, 'haunting'), (6, 2, 4, 'cold');
"""


@pytest.fixture(scope="session")
def rest_db(pg: TestPostgres, data_db: str) -> str:
    with pg.connect(data_db) as conn:
        conn.execute(SCHEMA_SQL)
    return data_db


@pytest.fixture(scope="session")
def rest_server(athena_factory: Callable[..., AthenaServer], rest_db: str) -> AthenaServer:
    """A gateway of its own that exposes the extra schema ``rest_extra`` as well."""
    return athena_factory(rest_schemas="rest_extra", keep=True)


@pytest.fixture
def sql(pg: TestPostgres, rest_db: str) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """``sql("SELECT …", params)`` → rows as dicts, straight from PostgreSQL (the oracle)."""
    from psycopg.rows import dict_row

    with pg.connect(rest_db) as conn:

        def run(query: str, params: Any = None) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []

        yield run


@pytest.fixture
def native_headers(admin_key: str) -> dict[str, str]:
    return {
        "apikey": admin_key,
        "X-Athena-Client": "athena",
        "X-Athena-Rest-Format": "postgrest",
    }


@pytest.fixture
def pgrst(
    rest_server: AthenaServer, native_headers: dict[str, str]
) -> Iterator[SyncPostgrestClient]:
    """The real PostgREST client (postgrest-py), pointed at Athena."""
    with SyncPostgrestClient(f"{rest_server.url}/rest/v1", headers=native_headers) as client:
        yield client


@pytest.fixture
def items(pg: TestPostgres, rest_db: str) -> Iterator[psycopg.Connection]:
    """A clean ``rest_items`` (3 rows) for each write test; yields a direct connection."""
    with pg.connect(rest_db) as conn:
        conn.execute("TRUNCATE rest_items RESTART IDENTITY")
        conn.execute(
            "INSERT INTO rest_items (name, qty, note) VALUES ('apple', 3, 'red'), "
            "('banana', 5, NULL), ('cherry', 7, 'dark')"
        )
        yield conn


# -- Postgres functions for /rest/v1/rpc, /gateway/rpc and /rpc (prefix rpc_) ----------------

FUNCTIONS_SQL = """
DROP TABLE IF EXISTS rpc_planets, rpc_stars, rpc_log CASCADE;
CREATE TABLE rpc_stars (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE rpc_planets (
    id integer PRIMARY KEY,
    name text NOT NULL,
    moons integer NOT NULL,
    kind text NOT NULL,
    star_id integer REFERENCES rpc_stars(id)
);
CREATE TABLE rpc_log (id serial PRIMARY KEY, msg text NOT NULL);
INSERT INTO rpc_stars VALUES (1, 'Sol'), (2, 'Proxima');
INSERT INTO rpc_planets VALUES
    (1, 'Mercury', 0, 'rocky', 1), (2, 'Venus', 0, 'rocky', 1), (3, 'Earth', 1, 'rocky', 1),
    (4, 'Mars', 2, 'rocky', 1), (5, 'Jupiter', 95, 'giant', 1), (6, 'Saturn', 146, 'giant', 1),
    (7, 'Proxima b', 0, 'rocky', 2);

-- volatile (the default), set of a table: filtered, ordered, paged and embedded like one
CREATE OR REPLACE FUNCTION rpc_all_planets() RETURNS SETOF rpc_planets
    LANGUAGE sql AS $$ SELECT * FROM rpc_planets $$;
CREATE OR REPLACE FUNCTION rpc_planets_like(needle text) RETURNS SETOF rpc_planets
    LANGUAGE sql STABLE AS $$ SELECT * FROM rpc_planets WHERE name ILIKE '%' || needle || '%' $$;
-- scalars, overloads told apart by argument names, defaults
CREATE OR REPLACE FUNCTION rpc_add(a integer, b integer) RETURNS integer
    LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;
CREATE OR REPLACE FUNCTION rpc_greet(who text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT 'hello ' || who $$;
CREATE OR REPLACE FUNCTION rpc_greet(first text, last text, punct text DEFAULT '!') RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT 'hello ' || first || ' ' || last || punct $$;
CREATE OR REPLACE FUNCTION rpc_series(n integer) RETURNS SETOF integer
    LANGUAGE sql IMMUTABLE AS $$ SELECT generate_series(1, n) $$;
CREATE OR REPLACE FUNCTION rpc_kinds() RETURNS TABLE(kind text, planets bigint, moons bigint)
    LANGUAGE sql STABLE AS $$
    SELECT kind, count(*), sum(moons) FROM rpc_planets GROUP BY kind $$;
CREATE OR REPLACE FUNCTION rpc_planet(pid integer) RETURNS rpc_planets
    LANGUAGE sql STABLE AS $$ SELECT * FROM rpc_planets WHERE id = pid $$;
CREATE OR REPLACE FUNCTION rpc_tags(tags text[]) RETURNS integer
    LANGUAGE sql IMMUTABLE AS $$ SELECT cardinality(tags) $$;
-- writes: void → 204; runs read-write only when volatile and called with POST
CREATE OR REPLACE FUNCTION rpc_note(msg text) RETURNS void
    LANGUAGE sql AS $$ INSERT INTO rpc_log (msg) VALUES (msg) $$;
CREATE OR REPLACE FUNCTION rpc_fail(msg text) RETURNS integer
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused: %', msg USING HINT = 'ask nicely'; END $$;
-- one unnamed json parameter takes the whole body
CREATE OR REPLACE FUNCTION rpc_echo(json) RETURNS json
    LANGUAGE sql IMMUTABLE AS $$ SELECT $1 $$;
CREATE OR REPLACE FUNCTION rpc_keys(payload jsonb) RETURNS integer
    LANGUAGE sql IMMUTABLE AS $$ SELECT count(*)::integer FROM jsonb_object_keys(payload) $$;
"""


@pytest.fixture(scope="session")
def functions(pg: TestPostgres, rest_db: str) -> str:
    with pg.connect(rest_db) as conn:
        conn.execute(FUNCTIONS_SQL)
    return rest_db
