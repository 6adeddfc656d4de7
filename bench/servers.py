"""The servers under test, each started fresh on a free 127.0.0.1 port, pinned to one core.

- collab: this project, `collab serve` from the project's .venv, default settings,
  a temp SQLite file (every update committed, group commit, before it is relayed)
- y-websocket: npm @y/websocket-server with its LevelDB persistence (YPERSISTENCE)
- pycrdt-websocket: its WebsocketServer on uvicorn with its SQLiteYStore
- hocuspocus: @hocuspocus/server, memory only
- collab variants (collab-asyncio, collab-wsproto, ...): collab's own code with
  another event loop / WebSocket implementation / permessage-deflate setting,
  through bench/collab_variant.py
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
PROJECT_PYTHON = PROJECT_DIR / ".venv" / "bin" / "python"
COLLAB_BIN = PROJECT_DIR / ".venv" / "bin" / "collab"
NODE_DIR = BENCH_DIR / "node"
NODE_SERVER = NODE_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"
SERVER_CORE = "0"
GENERATOR_CORE = "1"
# The machine is shared: without a priority boost, other work scheduled on the
# server's core takes its share and the figures measure the neighbours. Both the
# server and the generator run at this niceness (root only; ignored otherwise).
NICENESS = "-15" if os.geteuid() == 0 else "0"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_NOTABLE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback|^\S*Error\b|\bError: ")


@dataclass(frozen=True)
class ServerKind:
    name: str
    description: str
    storage: str
    url_path: str = "/ws/"  # a room's URL is ws://host:port{url_path}{room}
    hocuspocus: bool = False  # the room name travels in every message instead
    has_storage: bool = True
    collab_variant: tuple[str, ...] = ()  # arguments for bench/collab_variant.py

    @property
    def is_collab(self) -> bool:
        return self.name.startswith("collab")


SERVERS: dict[str, ServerKind] = {
    k.name: k
    for k in (
        ServerKind("collab", "collab (this project), default settings", "SQLite, before relay"),
        ServerKind(
            "y-websocket",
            "@y/websocket-server (reference) + LevelDB",
            "LevelDB, after relay",
            url_path="/",
        ),
        ServerKind(
            "pycrdt-websocket",
            "pycrdt-websocket on uvicorn + SQLiteYStore",
            "SQLite, after relay",
        ),
        ServerKind(
            "hocuspocus",
            "@hocuspocus/server, memory only",
            "memory only",
            url_path="/",
            hocuspocus=True,
            has_storage=False,
        ),
        # Transport variants of collab (same code; loop / WebSocket library / deflate).
        ServerKind(
            "collab-asyncio",
            "collab, asyncio loop",
            "SQLite, before relay",
            collab_variant=("--loop", "asyncio"),
        ),
        ServerKind(
            "collab-websockets",
            "collab, uvicorn --ws websockets (legacy impl)",
            "SQLite, before relay",
            collab_variant=("--ws", "websockets"),
        ),
        ServerKind(
            "collab-wsproto",
            "collab, uvicorn --ws wsproto",
            "SQLite, before relay",
            collab_variant=("--ws", "wsproto"),
        ),
        ServerKind(
            "collab-nodeflate",
            "collab, permessage-deflate off",
            "SQLite, before relay",
            collab_variant=("--deflate", "off"),
        ),
    )
}
PEERS = ("y-websocket", "pycrdt-websocket", "hocuspocus")
REFERENCE = "y-websocket"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_bytes(path: Path) -> int:
    """Bytes of every file under `path` (a database and its WAL, or a LevelDB folder)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


@dataclass
class LogFindings:
    notable_lines: int = 0
    examples: list[str] = field(default_factory=list)


def scan_log(path: Path, *, max_examples: int = 5) -> LogFindings:
    """Count warning/error lines; keep the first few distinct ones (numbers masked)."""
    findings = LogFindings()
    seen: set[str] = set()
    for line in path.read_text(errors="replace").splitlines():
        if not _NOTABLE.search(line):
            continue
        findings.notable_lines += 1
        shape = re.sub(r"\d+", "N", line.split(" ", 2)[-1])[:200]
        if shape not in seen and len(findings.examples) < max_examples:
            seen.add(shape)
            findings.examples.append(line.strip()[:300])
    return findings


class Server:
    """One server process on its own core; restartable on the same storage."""

    def __init__(
        self,
        kind: ServerKind,
        workdir: Path,
        log_path: Path,
        collab_env: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.collab_env = collab_env or {}
        self.workdir = workdir
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0
        self.returncode: int | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.kind.url_path}"

    @property
    def storage_path(self) -> Path:
        return self.workdir / "store"

    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
        kind = self.kind
        if kind.is_collab:
            env.update(self.collab_env)
            self.storage_path.mkdir(exist_ok=True)
            database = f"sqlite+aiosqlite:///{self.storage_path / 'collab.db'}"
            serve = ["serve", "--port", str(self.port), "--database", database]
            if kind.collab_variant:
                script = str(BENCH_DIR / "collab_variant.py")
                cmd = [str(PROJECT_PYTHON), script, *kind.collab_variant, "--", *serve]
            else:
                cmd = [str(COLLAB_BIN), *serve]
            return cmd, env, self.workdir
        if kind.name == "y-websocket":
            env.update(HOST="127.0.0.1", PORT=str(self.port), YPERSISTENCE=str(self.storage_path))
            return ["node", str(NODE_SERVER)], env, NODE_DIR
        if kind.name == "hocuspocus":
            return ["node", str(NODE_DIR / "hocuspocus-server.mjs"), str(self.port)], env, NODE_DIR
        self.storage_path.mkdir(exist_ok=True)
        script = str(BENCH_DIR / "pycrdt_server.py")
        sqlite = str(self.storage_path / "pycrdt.db")
        return (
            [sys.executable, script, "--port", str(self.port), "--sqlite", sqlite],
            env,
            BENCH_DIR,
        )

    def start(self, *, timeout_s: float = 30.0) -> None:
        cmd, env, cwd = self._command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["nice", "-n", NICENESS, "taskset", "-c", SERVER_CORE, *cmd],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = started + timeout_s
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind.name} exited with {self.process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                self.started_s = time.perf_counter() - started
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind.name} did not listen within {timeout_s}s")

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def wait_quiet(
        self, *, idle_cpu: float = 0.03, window_s: float = 0.5, timeout_s: float = 60.0
    ) -> float:
        """Wait until the server uses under `idle_cpu` cores for `window_s` (its
        background writes are done); returns the seconds waited."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            before = self.cpu_seconds()
            time.sleep(window_s)
            if (self.cpu_seconds() - before) / window_s < idle_cpu:
                break
        return time.perf_counter() - started

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """SIGTERM (graceful: collab compacts), SIGKILL after `timeout_s`."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()
        self.returncode = self.process.returncode

    def document_size_bytes(self, document: str) -> int | None:
        """collab's own account of a document's stored size (latest snapshot + log)."""
        if not self.kind.is_collab:
            return None
        url = f"http://127.0.0.1:{self.port}/api/documents"
        with urllib.request.urlopen(url, timeout=10) as response:
            for info in json.load(response):
                if info["name"] == document:
                    return int(info["size_bytes"])
        return None

    def scan(self) -> LogFindings:
        return scan_log(self.log_path)
