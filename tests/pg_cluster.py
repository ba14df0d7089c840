"""A throwaway PostgreSQL cluster: Debian's ``initdb``/``pg_ctl`` in a temporary directory, on 127.0.0.1 and a
free port, stopped and deleted when done.

The tests use it where no server answers on 127.0.0.1:5432 (``pg_fixtures``), and the tests that restart
PostgreSQL mid-run always use one of their own (the machine's server is never restarted)::

    with ThrowawayCluster() as cluster:   # initdb + start; stop + delete on exit
        dsn = cluster.dsn                 # postgresql://postgres@127.0.0.1:PORT/postgres (trust, loopback)
        cluster.stop(); cluster.start()   # same port, same data

As a command (``python -m tests.pg_cluster check``) it starts one, connects, and stops it: the check that
``scripts/test-prereqs.sh`` runs when it installed nothing else.

``initdb`` refuses to run as root; as root the cluster runs as the ``postgres`` user (Debian's package creates
it), which then owns the directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["ClusterUnavailable", "ThrowawayCluster", "postgres_bin_dir"]

_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_HINT = (
    "install Debian's PostgreSQL (scripts/test-prereqs.sh does: apt-get install -y postgresql), "
    "or set GCBRIDGE_TEST_PG_DSN=postgresql://USER@127.0.0.1:PORT/postgres to a server where USER may "
    "CREATE DATABASE"
)


class ClusterUnavailable(RuntimeError):
    """No throwaway cluster can be started here: the message says why and what to do."""


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``, if any."""
    candidates = [p for p in Path("/").glob(_BIN_GLOB.lstrip("/")) if (p / "initdb").exists()]
    candidates.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayCluster:
    """One PostgreSQL cluster of our own. ``start()`` the first time runs ``initdb``; the port stays the same
    across ``stop()``/``start()`` so that clients reconnect to the same address."""

    def __init__(self, *, port: int | None = None, base: Path | None = None) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise ClusterUnavailable(f"no PostgreSQL server binaries under {_BIN_GLOB}: {_HINT}")
        self.bin_dir = bin_dir
        self.port = port if port is not None else free_port()
        self._own_base = base is None
        self.base = base if base is not None else Path(tempfile.mkdtemp(prefix="gcbridge-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self._user = "postgres" if os.geteuid() == 0 else None
        self.running = False

    @property
    def dsn(self) -> str:
        """The superuser's URL (trust on the loopback address: no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60.0) -> None:
        if not self.data.exists():
            self._initdb()
        self._pg_ctl(
            "start", "-w", "-t", str(int(timeout)), "-l", str(self.log), "-o", self._server_options()
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``fast`` closes sessions and checkpoints; ``immediate`` is a crash (recovery at the next start)."""
        if self.running:
            self._pg_ctl("stop", "-w", "-m", mode)
            self.running = False

    def restart(self, down_for: float = 0.0, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(down_for)
        self.start()

    def destroy(self) -> None:
        """Stop (immediately: nothing here is worth a checkpoint) and delete the directory."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> ThrowawayCluster:
        try:
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.destroy()

    # -- internals ---------------------------------------------------------------------------------------

    def _server_options(self) -> str:
        # loopback only, the socket in our own directory (not /var/run/postgresql, which may not exist),
        # and durability settings that do not matter for a cluster deleted after the run
        return (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.base} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )

    def _initdb(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args)

    def _run(self, *argv: str) -> None:
        if self._user is not None:
            argv = ("runuser", "-u", self._user, "--", *argv)
        try:
            subprocess.run(  # noqa: S603 - PostgreSQL's own programs, fixed arguments, no shell
                argv, check=True, capture_output=True, text=True, timeout=120, cwd=self.base
            )
        except subprocess.CalledProcessError as exc:
            tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
            log = self.log.read_text(errors="replace").strip().splitlines()[-3:] if self.log.exists() else []
            raise ClusterUnavailable(
                f"{Path(argv[0] if self._user is None else argv[4]).name} failed "
                f"({' | '.join(tail + log) or exc.returncode}): {_HINT}"
            ) from None


def _check() -> int:
    """Start a cluster, run a query, stop it: proves the tests can have a server of their own here."""
    import asyncio

    import asyncpg

    async def ask(dsn: str) -> str:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    try:
        with ThrowawayCluster() as cluster:
            version = asyncio.run(ask(cluster.dsn))
            print(
                f"pg_cluster: a throwaway PostgreSQL {version} started on 127.0.0.1:{cluster.port}, "
                "answered, stopped"
            )
    except ClusterUnavailable as exc:
        print(f"pg_cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["check"]:
        print("usage: python -m tests.pg_cluster check", file=sys.stderr)
        sys.exit(2)
    sys.exit(_check())
