"""Benchmark collab against its peers in one run and report ratios.

    python3 bench/run.py [--quick] [--scenarios ...] [--servers ...] [--repeat N] [--profile]
    python3 bench/run.py --promote bench/runs/<timestamp>

Sets up what it needs the first time (bench/.venv with the pinned Python peer,
matplotlib and py-spy; bench/node/node_modules from the lock file), re-executes
itself inside bench/.venv, starts every server fresh for every scenario on a
free 127.0.0.1 port pinned to core 0, drives it with the Node load generator
pinned to core 1, prints the tables and writes results.jsonl, summary.md and
chart.png to bench/runs/<timestamp>/ (not versioned). `--baseline` or `--promote`
copies a run to bench/baselines/<kind>/ (versioned, see bench/baselines.py).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import baselines

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
BENCH_VENV = BENCH_DIR / ".venv"
VENV_PYTHON = BENCH_VENV / "bin" / "python"
REQUIREMENTS = BENCH_DIR / "requirements.txt"
NODE_DIR = BENCH_DIR / "node"
SCENARIOS = ("fanout", "ramp", "awareness", "idle", "trace", "bigdoc")
DEFAULT_SERVERS = ("collab", "y-websocket", "pycrdt-websocket", "hocuspocus")
ALL_SERVERS = (
    *DEFAULT_SERVERS,
    "collab-asyncio",
    "collab-websockets",
    "collab-wsproto",
    "collab-nodeflate",
)
WSPROTO = "wsproto==1.2.0"  # only for the collab-wsproto variant, installed on demand


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="collab vs. @y/websocket-server, pycrdt-websocket and Hocuspocus",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the reduced set of `make bench-quick` (< 2 min)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all in the plan)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated, from {','.join(ALL_SERVERS)} (default: the first four)",
    )
    parser.add_argument(
        "--configs",
        default="",
        help="comma-separated substrings: run only units whose config contains one "
        "(e.g. '10x10@1000,ramp,50 clients'); default: all",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per (scenario, server), interleaved; medians"
    )
    parser.add_argument(
        "--duration", type=float, default=8.0, help="measured seconds per fan-out/awareness run"
    )
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="every client offers permessage-deflate, as browsers do (default: none does; "
        "the big-document scenario always tries both)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy collab (and its variants) during fan-out 10x10@1000, the ramp, awareness, "
        "idle and the trace; profiles perturb the figures, so run this apart from a measurement",
    )
    parser.add_argument(
        "--rerender",
        type=Path,
        metavar="RUN_DIR",
        help="only redo the tables, summary.md and chart.png of an earlier run (or baseline)",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="if the run ends without errors, also make it the baseline of its kind "
        "(bench/baselines/<kind>/, versioned)",
    )
    parser.add_argument(
        "--promote",
        type=Path,
        metavar="RUN_DIR",
        help="only make an earlier run the baseline of its kind (read from its run.json)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=baselines.RUNS_DIR,
        help="where <timestamp>/ goes (default bench/runs, ignored by git)",
    )
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for scenario in args.scenarios:
        if scenario not in SCENARIOS:
            parser.error(f"unknown scenario {scenario!r} (choose from {', '.join(SCENARIOS)})")
    for server in args.servers:
        if server not in ALL_SERVERS:
            parser.error(f"unknown server {server!r} (choose from {', '.join(ALL_SERVERS)})")
    if args.repeat < 1 or args.duration <= 0:
        parser.error("--repeat and --duration must be positive")
    if args.promote and (args.rerender or args.baseline):
        parser.error("--promote runs nothing: not with --rerender or --baseline")
    return args


def promote(run_dir: Path) -> int:
    """Make an earlier run the baseline of its kind, the kind read from the
    command it recorded (bench/baselines.py)."""
    try:
        command = json.loads((run_dir / "run.json").read_text())["command"]
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"{run_dir}: no run.json with a command ({exc})")
    kind = baselines.run_kind(parse_args(shlex.split(command)[1:]), SCENARIOS)
    target = baselines.promote(run_dir, kind)
    print(f"{run_dir} is now the {kind!r} baseline: {target} (git add it to keep it)")
    return 0


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


def ensure_wsproto() -> None:
    """The collab-wsproto variant needs wsproto in the project's .venv (not a collab
    dependency: uvicorn[standard] does not include it)."""
    python = PROJECT_DIR / ".venv" / "bin" / "python"
    if subprocess.run([str(python), "-c", "import wsproto"], capture_output=True).returncode:
        _run([str(python), "-m", "pip", "install", "--quiet", WSPROTO], PROJECT_DIR)


def bootstrap(args: argparse.Namespace, argv: list[str]) -> None:
    """Make bench/.venv and bench/node ready, then continue inside bench/.venv
    (--rerender only needs bench/.venv: it reads a run, it runs nothing)."""
    if not args.rerender:
        for tool in ("node", "taskset"):
            if shutil.which(tool) is None:
                sys.exit(
                    f"{tool} is not installed "
                    "(node: apt-get install nodejs npm; taskset: util-linux)"
                )
        if (os.cpu_count() or 1) < 2:
            sys.exit("the benchmark pins the server and the load generator to two different cores")
        ensure_node_env()
    ensure_python_env()
    if not args.rerender:
        collab_bin = PROJECT_DIR / ".venv" / "bin" / "collab"
        if any(s.startswith("collab") for s in args.servers) and not collab_bin.exists():
            sys.exit(f"{collab_bin} is missing: run `make install` in {PROJECT_DIR} first")
        if "collab-wsproto" in args.servers:
            ensure_wsproto()
    if Path(sys.prefix).resolve() != BENCH_VENV.resolve():
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), str(Path(__file__).resolve()), *argv])


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    if args.promote:
        sys.exit(promote(args.promote))
    bootstrap(args, argv)
    from suite import rerender, run_benchmarks

    if args.rerender:
        sys.exit(rerender(args.rerender))
    failed, run_dir = run_benchmarks(args)
    if args.baseline and failed:
        print(f"not made a baseline: {run_dir} has errors")
    elif args.baseline:
        promote(run_dir)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
