"""Redis and PostgreSQL for the tests: the given servers, or our own from the binaries.

Like pytest-redis / pytest-postgresql: a test session uses the servers named by
COLLAB_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) and
COLLAB_TEST_POSTGRES_DSN (default postgresql://postgres@127.0.0.1:5432/postgres);
if one does not answer, the session starts its own from the installed binaries
(/usr/bin/redis-server; PostgreSQL's initdb and pg_ctl) in a temporary
directory on a free port, and stops it at the end. Tests that restart Redis
always start their own (`RedisServer`), never touching a shared one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from tests.support.server import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_DEFAULT_URL = "redis://127.0.0.1:6379/0"
POSTGRES_DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _wait_until(check: object, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout_s}s")
        time.sleep(0.05)


class RedisServer:
    """A private redis-server (no persistence, like the shared one) that a test
    may stop and start again - a restart loses every stream."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if not os.path.exists(REDIS_SERVER):
            raise RuntimeError(f"{REDIS_SERVER} is missing: apt-get install redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        _wait_until(lambda: _answers(self.port), "redis-server")

    def stop(self) -> None:
        """kill -9: whatever it held is gone, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None


class PostgresServer:
    """A private PostgreSQL cluster from the installed binaries (trust auth), in a
    directory of its own under the system's temp dir (PostgreSQL refuses to run
    as root, and the postgres user cannot enter pytest's root-only directories)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="collab-test-postgres-"))
        self.port = free_port()
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            raise RuntimeError("PostgreSQL binaries not found: apt-get install postgresql")
        self._bin = Path(bins[-1]).parent

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        # PostgreSQL refuses to run as root: run it as the postgres user then.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True)

    def start(self) -> None:
        data = self.directory / "pgdata"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
        self._run(str(self._bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
        self._run(
            str(self._bin / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(self.directory / "postgres.log"),
            "-o",
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1",
            "-w",
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            data = str(self.directory / "pgdata")
            self._run(str(self._bin / "pg_ctl"), "-D", data, "-m", "fast", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


class OwnServer(Protocol):
    url: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


def given_or_own(
    env_var: str, default_url: str, default_port: int, make: Callable[[], OwnServer]
) -> Iterator[str]:
    """The URL in `env_var` (or the default) if something answers there; else a
    server of our own from `make`, stopped when the generator is closed."""
    url = os.environ.get(env_var, default_url)
    host, _, port = url.split("//", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1].partition(":")
    if _answers(int(port or default_port), host):
        yield url
        return
    server = make()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
