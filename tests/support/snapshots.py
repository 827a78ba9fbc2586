"""The small schema snapshot (authors, books) the PostgREST grammar and builder unit tests use."""

from __future__ import annotations

from athena.db.introspection import parse_snapshot


def col(name: str, udt: str = "int4", category: str = "N", position: int = 1) -> dict:
    return {
        "name": name, "type": udt, "udt": udt, "category": category, "nullable": True,
        "has_default": False, "generated": False, "position": position,
    }  # fmt: skip


SNAPSHOT = parse_snapshot(
    [
        {
            "schema": "public", "name": "authors", "kind": "r",
            "columns": [col("id"), col("name", "text", "S", 2)],
            "primary_key": ["id"], "unique": [["id"]], "foreign_keys": [],
        },
        {
            "schema": "public", "name": "books", "kind": "r",
            "columns": [
                col("id"), col("title", "text", "S", 2), col("author_id", position=3),
                col("tags", "_text", "A", 4), col("meta", "jsonb", "U", 5),
                col("search", "tsvector", "U", 6),
            ],
            "primary_key": ["id"], "unique": [["id"]],
            "foreign_keys": [{"name": "books_author_id_fkey", "columns": ["author_id"],
                              "ref_schema": "public", "ref_table": "authors",
                              "ref_columns": ["id"]}],
        },
    ]
)  # fmt: skip
BOOKS = SNAPSHOT.find("books")
