"""The servers under test, each started fresh as a subprocess on a free 127.0.0.1 port.

- collab: this project, `collab serve` from the project's .venv, default settings
  (SQLite; every update committed, group commit, before it is relayed)
- node: npm @y/websocket-server, the reference y-websocket server (memory only)
- pycrdt-ws: pycrdt-websocket's WebsocketServer as an ASGI app on uvicorn (memory only)
- pycrdt-ws+sqlite: the same with its SQLiteYStore (written after the relay)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
COLLAB_BIN = PROJECT_DIR / ".venv" / "bin" / "collab"
NODE_DIR = BENCH_DIR / "node"
NODE_SERVER = NODE_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"
PYCRDT_SERVER = BENCH_DIR / "pycrdt_server.py"

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Lines worth reporting from a server's log (Python logging levels, tracebacks, Node errors).
_NOTABLE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback|^\S*Error\b|\bError: ")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    storage: str  # shown in the tables: "durable before relay", "after relay", "memory"
    durable: bool  # has storage at all (cold-from-disk joins make sense)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("collab", "collab (this project), default settings", "SQLite, before relay", True),
        Target("node", "@y/websocket-server (reference Node server)", "memory only", False),
        Target("pycrdt-ws", "pycrdt-websocket on uvicorn", "memory only", False),
        Target(
            "pycrdt-ws+sqlite",
            "pycrdt-websocket + SQLiteYStore on uvicorn",
            "SQLite, after relay",
            True,
        ),
    )
}
PEERS = [name for name in TARGETS if name != "collab"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds spent on anything but idle/iowait, summed over all cores (/proc/stat)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return float("nan")
    ticks = [int(v) for v in first[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / _CLOCK_TICKS


def process_peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a running process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return float("nan")


@dataclass
class LogFindings:
    notable_lines: int = 0
    examples: list[str] = field(default_factory=list)


def scan_log(path: Path, *, max_examples: int = 8) -> LogFindings:
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
    """One running server process."""

    def __init__(
        self, target: Target, workdir: Path, log_path: Path, *, extra_args: Sequence[str] = ()
    ) -> None:
        self.target = target
        self.workdir = workdir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.db_path = workdir / f"{target.name}.db"
        self.process: asyncio.subprocess.Process | None = None
        self.started_s = 0.0
        self.stop_s = 0.0
        self.returncode: int | None = None
        self.findings = LogFindings()

    def url(self, document: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{document}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        return process_peak_rss_mb(self.pid)

    def _command(self) -> tuple[list[str], dict[str, str], Path]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAB_")}
        name = self.target.name
        if name == "collab":
            database = f"sqlite+aiosqlite:///{self.db_path}"
            cmd = [str(COLLAB_BIN), "serve", "--port", str(self.port), "--database", database]
            return cmd + self.extra_args, env, self.workdir
        if name == "node":
            env.update(HOST="127.0.0.1", PORT=str(self.port))
            return ["node", str(NODE_SERVER), *self.extra_args], env, NODE_DIR
        cmd = [sys.executable, str(PYCRDT_SERVER), "--port", str(self.port)]
        if name == "pycrdt-ws+sqlite":
            cmd += ["--sqlite", str(self.db_path)]
        return cmd + self.extra_args, env, self.workdir

    async def start(self, *, timeout_s: float = 30.0) -> None:
        cmd, env, cwd = self._command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *cmd,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = started + timeout_s
        while time.perf_counter() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(
                    f"{self.target.name} exited with {self.process.returncode}; see {self.log_path}"
                )
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                self.started_s = time.perf_counter() - started
                return
            await asyncio.sleep(0.05)
        await self.stop()
        raise RuntimeError(f"{self.target.name} did not listen within {timeout_s}s")

    async def stop(self, *, timeout_s: float = 20.0) -> None:
        """SIGTERM (graceful: collab compacts), SIGKILL after `timeout_s`."""
        if self.process is None or self.process.returncode is not None:
            return
        started = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        self.stop_s = time.perf_counter() - started
        self.returncode = self.process.returncode

    def count_in_log(self, needle: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(needle)
        except OSError:
            return 0

    def scan(self) -> LogFindings:
        self.findings = scan_log(self.log_path)
        return self.findings
