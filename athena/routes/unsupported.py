"""SDK 5 service paths Athena does not serve: a clear 404 ``not_supported`` naming the feature.

``@xylex-group/athena`` 5.x has storage (catalogs, files, connections, credentials …) and auth
modules whose calls land under ``/storage/…`` and ``/auth…``. The backup routes under
``/storage/admin/backups`` are served (``athena.http.prefixes`` maps them); everything else
there is answered here, after the body is read as for any route.
"""

from __future__ import annotations

from quart import Blueprint

from athena.http.prefixes import NOT_SUPPORTED, not_supported

blueprint = Blueprint("unsupported", __name__)

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _refuse(feature: str):  # type: ignore[no-untyped-def]
    async def view(rest: str = "") -> None:
        raise not_supported(feature)

    return view


for _prefix, _feature in NOT_SUPPORTED.items():
    _base = _prefix.rstrip("/")
    _name = _base.strip("/")
    blueprint.add_url_rule(_base, f"{_name}_root", _refuse(_feature), methods=_METHODS)
    blueprint.add_url_rule(
        f"{_base}/<path:rest>", f"{_name}_any", _refuse(_feature), methods=_METHODS
    )
