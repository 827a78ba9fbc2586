"""A change made anywhere reaches every gateway's cached decisions at once (NOTIFY), not only
after the cache TTL: a real Runtime with a 10-minute TTL sees a revoke made by another server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio

from athena.auth.guard import authorize
from athena.context import CallContext
from athena.errors import ApiError
from athena.runtime import Runtime
from athena.services.api_keys import listen_for_changes


async def test_revoke_on_another_server_applies_without_waiting_for_the_ttl(
    runtime: Runtime, admin: httpx.Client, make_key: Callable[..., tuple[str, dict[str, Any]]]
) -> None:
    assert runtime.settings.auth_cache_seconds >= 600
    key, record = make_key(rights=["gateway.read"], client_name="athena")
    call = CallContext.from_pairs([("apikey", key)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen_for_changes, runtime)
        principal = await authorize(runtime, call, "athena", "users.read")
        assert principal.public_id == record["public_id"]
        assert principal.rights == ("gateway.read",)

        # the shared server (another process) deactivates the key
        response = await trio.to_thread.run_sync(
            lambda: admin.patch(f"/admin/api-keys/{record['id']}", json={"is_active": False})
        )
        assert response.status_code == 200

        with trio.fail_after(5):
            while True:
                try:
                    await authorize(runtime, call, "athena", "users.read")
                except ApiError as exc:
                    assert exc.code == "inactive_api_key"
                    assert exc.status == 401
                    break
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


async def test_same_runtime_change_applies_on_the_next_call(
    runtime: Runtime, make_key: Callable[..., tuple[str, dict[str, Any]]]
) -> None:
    """The admin routes' path (``on_catalog``) drops this process's cache synchronously."""
    from athena.services import api_keys as svc

    key, record = make_key(rights=["gateway.read"])
    call = CallContext.from_pairs([("x-api-key", key)])
    await authorize(runtime, call, "athena", "users.read")
    update = svc.parse(svc.KeyUpdate, {"rights": ["gateway.write"]})
    await svc.on_catalog(runtime, svc.update_key, svc.parse_uuid(record["id"]), update)
    with pytest.raises(ApiError) as refused:
        await authorize(runtime, call, "athena", "users.read")
    assert refused.value.code == "insufficient_rights"
    assert (await authorize(runtime, call, "athena", "users.write")).rights == ("gateway.write",)
