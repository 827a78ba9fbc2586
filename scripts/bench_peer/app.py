"""The endpoint a Python team would hand-write instead of deploying a gateway (issue 20's peer).

FastAPI + asyncpg, served by uvicorn with uvloop and httptools: one ``GET /items/{id}`` that
checks an ``apikey`` header and returns the JSON text PostgreSQL builds — the same statement
shape the gateway's fetch runs, so both do the same database work. It does nothing else: no
rights, no request log, no metrics, no schema checks. Started by ``scripts/bench.py`` from its own
venv (``requirements.txt`` beside this file), so the project's runtime gains no dependency.

Environment: ``PEER_DSN`` (the data database), ``PEER_KEY`` (the accepted apikey),
``PEER_POOL`` (connections per worker).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import Response

STATEMENT = (
    "SELECT coalesce(json_agg(t), '[]')::text FROM (SELECT * FROM bench_items WHERE id = $1) t"
)
state: dict[str, asyncpg.Pool] = {}


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    size = int(os.environ.get("PEER_POOL", "8"))
    state["pool"] = await asyncpg.create_pool(os.environ["PEER_DSN"], min_size=size, max_size=size)
    yield
    await state["pool"].close()


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}")
async def item(item_id: int, apikey: str = Header("")) -> Response:
    if not secrets.compare_digest(apikey, os.environ["PEER_KEY"]):
        raise HTTPException(status_code=401, detail="invalid apikey")
    text = await state["pool"].fetchval(STATEMENT, item_id)
    return Response(text, media_type="application/json")


@app.get("/ping")
async def ping() -> Response:
    return Response("pong", media_type="text/plain")
