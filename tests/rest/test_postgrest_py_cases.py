"""Every case supabase-py's postgrest integration suite covers (src/postgrest/tests/_sync/
test_filter_request_builder_integration.py: 48 tests), driven through postgrest-py against
/rest/v1 in native mode — on data of our own, each answer checked against PostgreSQL.

The three retry cases run through a real loopback HTTP proxy that answers 503 (or 400) a few
times before it forwards to Athena: postgrest-py's retry behaviour is observed on the wire, not
by patching the client.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from postgrest import APIError, CountMethod, SyncPostgrestClient
from support.pg import TestPostgres
from support.servers import AthenaServer

SQL = Callable[..., list[dict[str, Any]]]

DATA_SQL = """
DROP TABLE IF EXISTS pgpy_towns, pgpy_lands, pgpy_people, pgpy_bookings, pgpy_tickets,
    pgpy_players, pgpy_bands CASCADE;
CREATE TABLE pgpy_lands (
    id bigint PRIMARY KEY, code char(2) NOT NULL, title varchar(80) NOT NULL,
    label varchar(80) NOT NULL, num smallint, dial integer NOT NULL
);
INSERT INTO pgpy_lands VALUES
    (1, 'NO', 'NORWAY', 'Norway', 578, 47), (2, 'NL', 'NETHERLANDS', 'Netherlands', 528, 31),
    (3, 'NZ', 'NEW ZEALAND', 'New Zealand', 554, 64), (4, 'NP', 'NEPAL', 'Nepal', 524, 977),
    (5, 'NA', 'NAMIBIA', 'Namibia', 516, 264), (6, 'BV', 'BOUVET ISLAND', 'Bouvet Island', NULL, 47),
    (7, 'PE', 'PERU', 'Peru', 604, 51), (8, 'PT', 'PORTUGAL', 'Portugal', 620, 351);
CREATE TABLE pgpy_towns (id bigint PRIMARY KEY, land_id bigint NOT NULL REFERENCES pgpy_lands,
                         name text);
INSERT INTO pgpy_towns VALUES (1, 1, 'Oslo'), (2, 1, 'Bergen'), (3, 2, 'Utrecht'),
    (4, 7, 'Lima'), (5, 8, 'Porto'), (6, 8, 'Lisbon');
CREATE TABLE pgpy_people (id bigint PRIMARY KEY, name text, address jsonb);
INSERT INTO pgpy_people VALUES
    (1, 'Ingrid', '{"city": "Oslo", "zip": 150}'), (2, 'Tomas', '{"city": "Lima", "zip": 15001}');
CREATE TABLE pgpy_bookings (id bigint PRIMARY KEY, room text, during tsrange);
INSERT INTO pgpy_bookings VALUES
    (1, 'Birch', '[2030-05-01 09:00, 2030-05-01 10:00)'),
    (2, 'Cedar', '[2030-05-02 14:00, 2030-05-02 15:00)');
CREATE TABLE pgpy_tickets (id bigint PRIMARY KEY, title text, tags text[]);
INSERT INTO pgpy_tickets VALUES
    (1, 'Login fails', '{state:open,urgency:low}'),
    (2, 'Typo on homepage', '{state:closed,urgency:low}'),
    (3, 'Export to CSV', '{state:open,urgency:high}'),
    (4, 'Dark mode', '{state:closed,urgency:high}');
CREATE TABLE pgpy_bands (id bigint PRIMARY KEY, name text);
CREATE TABLE pgpy_players (id bigint PRIMARY KEY, band_id bigint NOT NULL REFERENCES pgpy_bands,
                           name text);
INSERT INTO pgpy_bands VALUES (1, 'brass'), (2, 'percussion');
INSERT INTO pgpy_players VALUES (1, 1, 'trumpet'), (2, 1, 'tuba');
CREATE OR REPLACE FUNCTION pgpy_all_lands() RETURNS SETOF pgpy_lands
    LANGUAGE sql AS $$ SELECT * FROM pgpy_lands $$;
CREATE OR REPLACE FUNCTION pgpy_lands_named(term text) RETURNS SETOF pgpy_lands
    LANGUAGE sql AS $$ SELECT * FROM pgpy_lands WHERE label ILIKE '%' || term || '%' $$;
"""


@pytest.fixture(scope="module")
def pgpy_db(pg: TestPostgres, rest_db: str) -> str:
    with pg.connect(rest_db) as conn:
        conn.execute(DATA_SQL)
    return rest_db


@pytest.fixture
def db(pgrst: SyncPostgrestClient, pgpy_db: str) -> SyncPostgrestClient:
    return pgrst


def lands(db: SyncPostgrestClient, columns: str = "title, code") -> Any:
    return db.from_("pgpy_lands").select(columns)


# -- count, match, single ------------------------------------------------------------------------


def test_multivalued_param_through_a_custom_httpx_client(
    rest_server: AthenaServer, native_headers: dict[str, str], pgpy_db: str, sql: SQL
) -> None:
    transport = httpx.HTTPTransport(
        retries=4, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
    )
    with httpx.Client(transport=transport, headers={"x-user-agent": "cases/1"}) as http:
        client = SyncPostgrestClient(
            f"{rest_server.url}/rest/v1", headers=native_headers, http_client=http
        )
        res = (
            client.from_("pgpy_lands").select("title, code", count=CountMethod.exact)
            .lte("num", 530).gte("num", 520).order("id").execute()
        )  # fmt: skip
    expected = sql("SELECT title, code FROM pgpy_lands WHERE num BETWEEN 520 AND 530 ORDER BY id")
    assert res.count == len(expected) == 2 and res.data == expected


def test_multivalued_param(db: SyncPostgrestClient, sql: SQL) -> None:
    res = (
        db.from_("pgpy_lands").select("title, code", count=CountMethod.exact)
        .lte("num", 560).gte("num", 550).execute()
    )  # fmt: skip
    assert res.count == 1 and res.data == [{"title": "NEW ZEALAND", "code": "NZ"}]
    assert res.data == sql("SELECT title, code FROM pgpy_lands WHERE num BETWEEN 550 AND 560")


def test_match(db: SyncPostgrestClient) -> None:
    res = lands(db).match({"num": 578, "label": "Norway"}).single().execute()
    assert res.data == {"title": "NORWAY", "code": "NO"}


def test_match_maybe_single(db: SyncPostgrestClient) -> None:
    res = lands(db).match({"num": 604, "label": "Peru"}).maybe_single().execute()
    assert res is not None and res.data == {"title": "PERU", "code": "PE"}


def test_no_match_maybe_single(db: SyncPostgrestClient) -> None:
    assert lands(db).match({"num": 1, "label": "Atlantis"}).maybe_single().execute() is None


def test_equals(db: SyncPostgrestClient) -> None:
    assert lands(db).eq("label", "Nepal").single().execute().data == {
        "title": "NEPAL",
        "code": "NP",
    }


def test_not_equal(db: SyncPostgrestClient) -> None:
    res = db.from_("pgpy_people").select("id, name").neq("name", "Tomas").single().execute()
    assert res.data == {"id": 1, "name": "Ingrid"}


def test_greater_than(db: SyncPostgrestClient) -> None:
    res = db.from_("pgpy_people").select("id, name").gt("id", 1).single().execute()
    assert res.data == {"id": 2, "name": "Tomas"}


def test_greater_than_or_equals_to(db: SyncPostgrestClient) -> None:
    res = db.from_("pgpy_people").select("id, name").gte("id", 1).order("id").execute()
    assert res.data == [{"id": 1, "name": "Ingrid"}, {"id": 2, "name": "Tomas"}]


# -- containment and ranges ------------------------------------------------------------------------


def test_contains_dictionary(db: SyncPostgrestClient) -> None:
    res = (
        db.from_("pgpy_people").select("name").contains("address", {"zip": 150}).single().execute()
    )
    assert res.data == {"name": "Ingrid"}


def test_contains_any_item(db: SyncPostgrestClient) -> None:
    res = db.from_("pgpy_tickets").select("title").contains("tags", ["state:open", "urgency:low"])
    assert res.execute().data == [{"title": "Login fails"}]


def bookings(db: SyncPostgrestClient) -> Any:
    return db.from_("pgpy_bookings").select("id, room")


def test_contains_on_range(db: SyncPostgrestClient) -> None:
    res = bookings(db).contains("during", "[2030-05-01 09:15, 2030-05-01 09:45)").execute()
    assert res.data == [{"id": 1, "room": "Birch"}]


def test_contained_by_mixed_items(db: SyncPostgrestClient) -> None:
    res = bookings(db).contained_by("during", "[2030-05-01 00:00, 2030-05-01 23:59)").execute()
    assert res.data == [{"id": 1, "room": "Birch"}]


def test_range_greater_than(db: SyncPostgrestClient) -> None:
    res = bookings(db).range_gt("during", ["2030-05-01 10:00", "2030-05-01 11:00"]).execute()
    assert res.data == [{"id": 2, "room": "Cedar"}]


def test_range_greater_than_or_equal_to(db: SyncPostgrestClient) -> None:
    res = bookings(db).range_gte("during", ["2030-05-02 13:00", "2030-05-02 14:30"]).execute()
    assert res.data == [{"id": 2, "room": "Cedar"}]


def test_range_less_than(db: SyncPostgrestClient) -> None:
    res = bookings(db).range_lt("during", ["2030-05-01 12:00", "2030-05-02 12:00"]).execute()
    assert res.data == [{"id": 1, "room": "Birch"}]


def test_range_less_than_or_equal_to(db: SyncPostgrestClient) -> None:
    res = bookings(db).range_lte("during", ["2030-05-01 08:00", "2030-05-01 11:00"]).execute()
    assert res.data == [{"id": 1, "room": "Birch"}]


def test_range_adjacent(db: SyncPostgrestClient) -> None:
    res = bookings(db).range_adjacent("during", ["2030-05-01 08:00", "2030-05-01 09:00"]).execute()
    assert res.data == [{"id": 1, "room": "Birch"}]


def test_overlaps(db: SyncPostgrestClient, sql: SQL) -> None:
    res = (
        db.from_("pgpy_tickets").select("title").overlaps("tags", ["state:closed", "urgency:high"])
        .order("id").execute()
    )  # fmt: skip
    assert res.data == sql(
        "SELECT title FROM pgpy_tickets WHERE tags && '{state:closed,urgency:high}' ORDER BY id"
    )
    assert len(res.data) == 3


def test_overlaps_with_timestamp_range(db: SyncPostgrestClient) -> None:
    res = (
        db.from_("pgpy_bookings").select("room")
        .overlaps("during", "[2030-05-02 14:30, 2030-05-02 16:00)").execute()
    )  # fmt: skip
    assert res.data == [{"room": "Cedar"}]


# -- pattern matching ---------------------------------------------------------------------------


def test_like(db: SyncPostgrestClient) -> None:
    assert lands(db).like("label", "%Zeal%").execute().data == [
        {"title": "NEW ZEALAND", "code": "NZ"}
    ]


def test_ilike(db: SyncPostgrestClient) -> None:
    assert lands(db).ilike("label", "%namib%").execute().data == [
        {"title": "NAMIBIA", "code": "NA"}
    ]


def test_like_all_of(db: SyncPostgrestClient) -> None:
    res = lands(db, "label, code").like_all_of("label", "N*,*l").execute()
    assert res.data == [{"label": "Nepal", "code": "NP"}]


def test_like_any_of(db: SyncPostgrestClient, sql: SQL) -> None:
    res = lands(db, "label, code").like_any_of("label", "Ne*,*gal").order("id").execute()
    assert res.data == sql(
        "SELECT label, code FROM pgpy_lands WHERE label LIKE ANY('{Ne%,%gal}') ORDER BY id"
    )
    assert [r["code"] for r in res.data] == ["NL", "NZ", "NP", "PT"]


def test_ilike_all_of(db: SyncPostgrestClient) -> None:
    res = lands(db, "label, code").ilike_all_of("label", "n*,*L").execute()
    assert res.data == [{"label": "Nepal", "code": "NP"}]


def test_ilike_any_of(db: SyncPostgrestClient) -> None:
    res = lands(db, "label, code").ilike_any_of("label", "pe*,*WAY").order("id").execute()
    assert res.data == [{"label": "Norway", "code": "NO"}, {"label": "Peru", "code": "PE"}]


# -- is, in, or ---------------------------------------------------------------------------------


def test_is_(db: SyncPostgrestClient) -> None:
    res = lands(db).is_("num", "null").limit(1).order("label").execute()
    assert res.data == [{"title": "BOUVET ISLAND", "code": "BV"}]


def test_is_not(db: SyncPostgrestClient) -> None:
    res = lands(db).not_.is_("num", "null").limit(1).order("label").execute()
    assert res.data == [{"title": "NAMIBIA", "code": "NA"}]


def test_in_(db: SyncPostgrestClient) -> None:
    res = lands(db).in_("label", ["Peru", "Nepal"]).order("id").execute()
    assert res.data == [{"title": "NEPAL", "code": "NP"}, {"title": "PERU", "code": "PE"}]


def test_or_(db: SyncPostgrestClient) -> None:
    res = lands(db).or_("code.eq.PT,label.eq.Norway").order("id").execute()
    assert res.data == [{"title": "NORWAY", "code": "NO"}, {"title": "PORTUGAL", "code": "PT"}]


def test_or_with_and(db: SyncPostgrestClient, sql: SQL) -> None:
    res = lands(db).or_("dial.gt.300,and(code.eq.NO,label.eq.Norway)").order("id").execute()
    assert res.data == sql(
        "SELECT title, code FROM pgpy_lands WHERE dial > 300 OR (code = 'NO' AND label = 'Norway')"
        " ORDER BY id"
    )
    assert [r["code"] for r in res.data] == ["NO", "NP", "PT"]


def test_or_in(db: SyncPostgrestClient) -> None:
    res = (
        db.from_("pgpy_tickets").select("id, title")
        .or_("id.in.(1,2),tags.cs.{state:open,urgency:high}").order("id").execute()
    )  # fmt: skip
    assert [r["id"] for r in res.data] == [1, 2, 3]


def test_or_on_reference_table(db: SyncPostgrestClient) -> None:
    res = (
        db.from_("pgpy_lands").select("title, pgpy_towns!inner(name)")
        .or_("land_id.eq.1,name.eq.Porto", reference_table="pgpy_towns").order("id").execute()
    )  # fmt: skip
    assert res.data == [
        {"title": "NORWAY", "pgpy_towns": [{"name": "Oslo"}, {"name": "Bergen"}]},
        {"title": "PORTUGAL", "pgpy_towns": [{"name": "Porto"}]},
    ]


# -- media types: EXPLAIN and CSV ----------------------------------------------------------------


def test_explain_json(db: SyncPostgrestClient) -> None:
    res = (
        db.from_("pgpy_lands").select("title, pgpy_towns!inner(name)")
        .or_("land_id.eq.1,name.eq.Porto", reference_table="pgpy_towns")
        .explain(format="json", analyze=True).execute()
    )  # fmt: skip
    # one statement: PostgreSQL aggregates the rows into the JSON body itself
    assert res.data[0]["Plan"]["Node Type"] == "Aggregate"
    assert "Actual Rows" in res.data[0]["Plan"]  # ANALYZE ran it


def test_csv(db: SyncPostgrestClient) -> None:
    res = lands(db).in_("label", ["Norway", "Nepal"]).order("id").csv().execute()
    assert res.data == "title,code\nNORWAY,NO\nNEPAL,NP"


def test_explain_text(db: SyncPostgrestClient) -> None:
    res = (
        db.from_("pgpy_lands").select("title, pgpy_towns!inner(name)")
        .or_("land_id.eq.1,name.eq.Porto", reference_table="pgpy_towns")
        .explain(analyze=True, verbose=True, settings=True, buffers=True, wal=True).execute()
    )  # fmt: skip
    text = str(res)
    assert "Aggregate" in text and "actual time=" in text  # ANALYZE, text format
    assert "Output:" in text  # VERBOSE
    # the embed's filter as the planner shows it
    assert "'Porto'::text" in text and "land_id" in text


# -- functions (rpc) ------------------------------------------------------------------------------


def test_rpc_with_single(db: SyncPostgrestClient) -> None:
    res = (
        db.rpc("pgpy_all_lands", {}).select("label, title, code").eq("label", "Peru")
        .single().execute()
    )  # fmt: skip
    assert res.data == {"label": "Peru", "title": "PERU", "code": "PE"}


def test_rpc_with_limit(db: SyncPostgrestClient) -> None:
    res = db.rpc("pgpy_all_lands", {}).select("label, code").eq("label", "Peru").limit(1).execute()
    assert res.data == [{"label": "Peru", "code": "PE"}]


def test_rpc_with_range(db: SyncPostgrestClient, sql: SQL) -> None:
    res = db.rpc("pgpy_all_lands", {}).select("label, code").order("id").range(1, 2).execute()
    assert res.data == sql("SELECT label, code FROM pgpy_lands ORDER BY id OFFSET 1 LIMIT 2")
    assert [r["code"] for r in res.data] == ["NL", "NZ"]


def test_rpc_post_with_args(db: SyncPostgrestClient) -> None:
    res = db.rpc("pgpy_lands_named", {"term": "zeal"}).select("label, code").execute()
    assert res.data == [{"label": "New Zealand", "code": "NZ"}]


def test_rpc_get_with_args(db: SyncPostgrestClient) -> None:
    res = db.rpc("pgpy_lands_named", {"term": "namib"}, get=True).select("label, code").execute()
    assert res.data == [{"label": "Namibia", "code": "NA"}]


def test_rpc_get_with_count(db: SyncPostgrestClient, sql: SQL) -> None:
    res = (
        db.rpc("pgpy_lands_named", {"term": "ne"}, get=True, count=CountMethod.exact)
        .select("label").order("id").execute()
    )  # fmt: skip
    expected = sql("SELECT label FROM pgpy_lands WHERE label ILIKE '%ne%' ORDER BY id")
    assert res.count == len(expected) == 3 and res.data == expected


def test_rpc_head_count(db: SyncPostgrestClient) -> None:
    res = db.rpc("pgpy_lands_named", {"term": "ne"}, head=True, count=CountMethod.exact).execute()
    assert res.count == 3 and res.data == []


# -- order ----------------------------------------------------------------------------------------


def test_order(db: SyncPostgrestClient) -> None:
    res = lands(db).limit(3).order("label", desc=True).execute()
    assert [r["code"] for r in res.data] == ["PT", "PE", "NO"]


def test_order_on_foreign_table(db: SyncPostgrestClient) -> None:
    res = (
        db.from_("pgpy_bands").select("name, pgpy_players(name)")
        .order("name", desc=True, foreign_table="pgpy_players").order("id").execute()
    )  # fmt: skip
    assert res.data == [
        {"name": "brass", "pgpy_players": [{"name": "tuba"}, {"name": "trumpet"}]},
        {"name": "percussion", "pgpy_players": []},
    ]


# -- retries, observed through a real proxy on loopback -----------------------------------------


class FlakyProxy:
    """Answers ``status`` to the first ``failures`` requests, then forwards to Athena."""

    def __init__(self, upstream: str, *, failures: int, status: int) -> None:
        self.upstream = upstream
        self.failures = failures
        self.status = status
        self.seen: list[dict[str, str]] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, _ = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        self.seen.append({k.lower(): v for k, v in headers.items()})
        if len(self.seen) <= self.failures:
            body = json.dumps(
                {"code": str(self.status), "message": "flaky", "details": None, "hint": None}
            ).encode()
            reason = "Service Unavailable" if self.status == 503 else "Bad Request"
            conn.sendall(
                f"HTTP/1.1 {self.status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            return
        forward = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
        answer = httpx.request(method, self.upstream + target, headers=forward)
        body = answer.content
        extra = "".join(
            f"{k}: {v}\r\n"
            for k, v in answer.headers.items()
            if k.lower() in ("content-type", "content-range")
        )
        conn.sendall(
            f"HTTP/1.1 {answer.status_code} OK\r\n{extra}Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy(rest_server: AthenaServer, pgpy_db: str) -> Iterator[Callable[..., FlakyProxy]]:
    made: list[FlakyProxy] = []

    def make(*, failures: int, status: int) -> FlakyProxy:
        p = FlakyProxy(rest_server.url, failures=failures, status=status)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def orchestra(client: SyncPostgrestClient) -> Any:
    return (
        client.from_("pgpy_bands").select("name, pgpy_players(name)")
        .order("name", desc=True, foreign_table="pgpy_players").order("id")
    )  # fmt: skip


EXPECTED_BANDS = [
    {"name": "brass", "pgpy_players": [{"name": "tuba"}, {"name": "trumpet"}]},
    {"name": "percussion", "pgpy_players": []},
]


def test_get_retry_503(proxy: Callable[..., FlakyProxy], native_headers: dict[str, str]) -> None:
    flaky = proxy(failures=3, status=503)
    with SyncPostgrestClient(f"{flaky.url}/rest/v1", headers=native_headers) as client:
        assert orchestra(client).execute().data == EXPECTED_BANDS
    assert len(flaky.seen) == 4
    assert [h.get("x-retry-count") for h in flaky.seen[1:]] == ["1", "2", "3"]


def test_get_retry_503_does_not_retry_when_disabled(
    proxy: Callable[..., FlakyProxy], native_headers: dict[str, str]
) -> None:
    flaky = proxy(failures=3, status=503)
    with SyncPostgrestClient(f"{flaky.url}/rest/v1", headers=native_headers) as client:
        with pytest.raises(APIError):
            orchestra(client).retry(False).execute()
    assert len(flaky.seen) == 1


def test_order_retry_400_doesnt_retry(
    proxy: Callable[..., FlakyProxy], native_headers: dict[str, str]
) -> None:
    flaky = proxy(failures=3, status=400)
    with SyncPostgrestClient(f"{flaky.url}/rest/v1", headers=native_headers) as client:
        with pytest.raises(APIError):
            orchestra(client).execute()
    assert len(flaky.seen) == 1
