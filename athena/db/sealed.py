"""Client database URIs encrypted at rest in the catalog (``cryptography``'s Fernet).

A client's ``pg_uri`` is stored as ``fernet:<token>``: the whole URI is sealed, so a password
in the user-info, in ``?password=`` or in a ``password=`` conninfo pair never sits in the
catalog in clear. The keys come from ``ATHENA_ENCRYPTION_KEYS`` (comma list of Fernet keys;
``athena secrets generate`` prints one): the first encrypts, every one decrypts
(``MultiFernet``), so rotation is "put the new key first, keep the old ones until
``athena secrets reencrypt`` — or the next start-up — has rewritten every row".

Without configured keys, the embedded default keeps one in ``<data-dir>/encryption.key``
(generated once, mode 0600; only gateways sharing that data directory share its catalog). A
gateway on an external catalog without keys has none to use — instances sharing a catalog must
share the key, so it cannot be invented per instance — and refuses to store a URI that carries
a password (403 ``plaintext_secret_refused``) unless ``ATHENA_ALLOW_PLAINTEXT_SECRETS=true``
says clear text is accepted; a URI without one (peer, certificate or ``.pgpass``
authentication) is stored as it is. Either way it warns at start-up.

Rows written in clear before encryption was configured keep working (``reveal`` passes plain
text through) and are sealed by ``reencrypt`` at the next start-up.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import psycopg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from psycopg.conninfo import conninfo_to_dict

from athena.config import Settings
from athena.errors import ApiError

log = logging.getLogger("athena.db")

PREFIX = "fernet:"
KEY_FILE = "encryption.key"


class SealedValueUnreadable(Exception):
    """A sealed value none of the configured keys opens (a key was dropped too early)."""


@dataclass
class UriSealer:
    """Seals and reveals catalog URIs; with no keys it passes text through unchanged."""

    keys: list[str] = field(default_factory=list)
    # Without keys: whether a URI carrying a password may be stored in clear (see the module
    # docstring; ``sealer_for`` sets it from ATHENA_ALLOW_PLAINTEXT_SECRETS).
    allow_plaintext: bool = True

    def __post_init__(self) -> None:
        self._fernets = [Fernet(k.encode()) for k in self.keys]
        self._multi = MultiFernet(self._fernets) if self._fernets else None

    @property
    def enabled(self) -> bool:
        return self._multi is not None

    def seal(self, text: str | None) -> str | None:
        """``text`` as the catalog stores it; 403 ``plaintext_secret_refused`` when it would be
        a password in clear that the configuration does not accept."""
        if text is None or text.startswith(PREFIX):
            return text
        if self._multi is None:
            if not self.allow_plaintext and carries_password(text):
                raise ApiError(
                    "plaintext_secret_refused",
                    "this gateway has no ATHENA_ENCRYPTION_KEYS, so the URI's password would be "
                    "stored in the catalog in clear: set ATHENA_ENCRYPTION_KEYS (athena secrets "
                    "generate), use a URI without a password (.pgpass, certificates) or "
                    "pg_uri_env_var, or set ATHENA_ALLOW_PLAINTEXT_SECRETS=true to accept it",
                )
            return text
        return PREFIX + self._multi.encrypt(text.encode()).decode()

    def reveal(self, stored: str | None) -> str | None:
        """The plain URI; ``SealedValueUnreadable`` if no configured key opens it."""
        if stored is None or not stored.startswith(PREFIX):
            return stored
        if self._multi is None:
            raise SealedValueUnreadable("no ATHENA_ENCRYPTION_KEYS configured")
        try:
            return self._multi.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SealedValueUnreadable("none of ATHENA_ENCRYPTION_KEYS opens it") from None

    def reveal_or_none(self, stored: str | None, what: str) -> str | None:
        """``reveal``, logging (without the value) and answering ``None`` when it cannot."""
        try:
            return self.reveal(stored)
        except SealedValueUnreadable as exc:
            log.error("cannot decrypt the stored URI of %s: %s", what, exc)
            return None

    def needs_rewrite(self, stored: str | None) -> bool:
        """Plain text while keys exist, or sealed under a key that is no longer the first."""
        if stored is None or self._multi is None:
            return False
        if not stored.startswith(PREFIX):
            return True
        try:
            self._fernets[0].decrypt(stored[len(PREFIX) :].encode())
        except InvalidToken:
            return True
        return False

    def rewrite(self, stored: str) -> str:
        """``stored`` sealed under the first key (plain text is sealed, old tokens rotated)."""
        assert self._multi is not None
        if not stored.startswith(PREFIX):
            return self.seal(stored) or stored
        try:
            token = self._multi.rotate(stored[len(PREFIX) :].encode())
        except InvalidToken:
            raise SealedValueUnreadable("none of ATHENA_ENCRYPTION_KEYS opens it") from None
        return PREFIX + token.decode()


def carries_password(uri: str) -> bool:
    """Whether a URI or conninfo string holds a password (in the user-info, ``?password=`` or
    a ``password=`` pair), as libpq reads it; one libpq cannot read counts as holding one."""
    try:
        return bool(conninfo_to_dict(uri).get("password"))
    except psycopg.Error:
        return True


def generate_key() -> str:
    return Fernet.generate_key().decode()


def sealer_for(settings: Settings, *, create: bool = True) -> UriSealer:
    """The configured keys; else the embedded default's key file (created on first use, unless
    ``create`` is false: a read-only caller such as ``athena check`` then gets no key)."""
    if settings.encryption_keys:
        return UriSealer(list(settings.encryption_keys))
    if settings.catalog_uri:
        return UriSealer(allow_plaintext=settings.allow_plaintext_secrets)
    path = settings.data_dir / KEY_FILE
    if not path.exists() and not create:
        return UriSealer()
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process of this data directory made it first
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(generate_key() + "\n")
    return UriSealer([path.read_text().strip()])


def reencrypt(conn: psycopg.Connection, sealer: UriSealer) -> tuple[int, list[str]]:
    """Seal plain rows and rotate old tokens to the first key, in one transaction.

    Returns (rows rewritten, names of clients whose URI no key opens — left as they are).
    """
    if not sealer.enabled:
        return 0, []
    rewritten, unreadable = 0, []
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, client_name, pg_uri FROM athena.athena_clients"
            " WHERE pg_uri IS NOT NULL FOR UPDATE"
        ).fetchall()
        for row_id, name, stored in rows:
            if not sealer.needs_rewrite(stored):
                continue
            try:
                new = sealer.rewrite(stored)
            except SealedValueUnreadable:
                unreadable.append(name)
                continue
            conn.execute(
                "UPDATE athena.athena_clients SET pg_uri = %s WHERE id = %s", (new, row_id)
            )
            rewritten += 1
    return rewritten, unreadable
