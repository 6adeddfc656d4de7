"""Benchmark collab against its peers in one run and report ratios.

    python bench/run.py [--workloads A,B,C] [--updates K] [--readers N] [--targets ...]

Sets up what it needs the first time (bench/.venv with the pinned Python peer
and client libraries, bench/node/node_modules from the lock file), re-executes
itself inside bench/.venv, starts every server fresh for every workload on a
free 127.0.0.1 port, prints a table per workload and writes JSON + a Markdown
summary to bench/results/<timestamp>/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
BENCH_VENV = BENCH_DIR / ".venv"
VENV_PYTHON = BENCH_VENV / "bin" / "python"
REQUIREMENTS = BENCH_DIR / "requirements.txt"
NODE_DIR = BENCH_DIR / "node"
WORKLOADS = ("A", "B", "C")
ALL_TARGETS = ("collab", "node", "pycrdt-ws", "pycrdt-ws+sqlite")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description="collab vs. @y/websocket-server vs. pycrdt-websocket"
    )
    parser.add_argument(
        "--workloads", default="A,B,C", help="comma-separated subset of A,B,C (default: all)"
    )
    parser.add_argument(
        "--updates",
        type=int,
        default=20_000,
        metavar="K",
        help="trace updates for A and C (default 20000; 0 = the full trace, 259,778)",
    )
    parser.add_argument(
        "--readers", type=int, default=20, metavar="N", help="readers in B (default 20)"
    )
    parser.add_argument(
        "--fanout-updates", type=int, default=500, help="updates the writer sends in B (500)"
    )
    parser.add_argument(
        "--interval-ms", type=float, default=5.0, help="B: ms between the writer's updates (5)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="A and B: runs per server, each on a fresh document (default 3; A reports the "
        "median run, B pools the latencies)",
    )
    parser.add_argument("--joins", type=int, default=20, help="C: joins per server (default 20)")
    parser.add_argument(
        "--targets",
        default=",".join(ALL_TARGETS),
        help=f"comma-separated servers (default: {','.join(ALL_TARGETS)})",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=BENCH_DIR / "results", help="default bench/results"
    )
    args = parser.parse_args(argv)
    args.workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for workload in args.workloads:
        if workload not in WORKLOADS:
            parser.error(f"unknown workload {workload!r} (choose from A, B, C)")
    for target in args.targets:
        if target not in ALL_TARGETS:
            parser.error(f"unknown target {target!r} (choose from {', '.join(ALL_TARGETS)})")
    if args.updates < 0 or min(args.readers, args.joins, args.fanout_updates, args.repeat) < 1:
        parser.error("counts must be positive (--updates 0 means the full trace)")
    if not 0.1 <= args.interval_ms <= 1000:
        parser.error("--interval-ms must be between 0.1 and 1000")
    return args


# -- set-up (runs under any Python >= 3.11; imports nothing outside the stdlib) --


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(cmd: list[str], cwd: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def ensure_python_env() -> None:
    stamp = BENCH_VENV / ".bench-installed"
    wanted = _digest(REQUIREMENTS)
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    if not VENV_PYTHON.exists():
        _run([sys.executable, "-m", "venv", str(BENCH_VENV)], BENCH_DIR)
    _run([str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], BENCH_DIR)
    stamp.write_text(wanted + "\n")


def ensure_node_env() -> None:
    stamp = NODE_DIR / "node_modules" / ".bench-installed"
    wanted = _digest(NODE_DIR / "package-lock.json")
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    _run(["npm", "ci", "--no-audit", "--no-fund"], NODE_DIR)
    stamp.write_text(wanted + "\n")


def bootstrap(args: argparse.Namespace, argv: list[str]) -> None:
    """Make bench/.venv and bench/node ready, then continue inside bench/.venv."""
    if "node" in args.targets:
        if subprocess.run(["node", "--version"], capture_output=True).returncode != 0:
            sys.exit("node is not installed (apt-get install nodejs npm), or pass --targets")
        ensure_node_env()
    ensure_python_env()
    collab_bin = PROJECT_DIR / ".venv" / "bin" / "collab"
    if "collab" in args.targets and not collab_bin.exists():
        sys.exit(f"{collab_bin} is missing: run `make install` in {PROJECT_DIR} first")
    if Path(sys.prefix).resolve() != BENCH_VENV.resolve():
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), str(Path(__file__).resolve()), *argv])


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    bootstrap(args, argv)
    from suite import run_benchmarks

    summary: dict[str, Any] = run_benchmarks(args)
    if summary.get("failed"):
        sys.exit(1)


if __name__ == "__main__":
    main()
