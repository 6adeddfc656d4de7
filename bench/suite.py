"""Runs the plan: a fresh server per unit, the load generator against it, records out.

Runs inside bench/.venv. Every unit is run against every server, `repeat` times,
interleaved (repeat 1 of every server, then repeat 2, ...) so that drift on the
shared machine touches all servers alike. The server is pinned to core 0 and the
generator to core 1 (taskset).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import chart
import report
import scenarios
from scenarios import Unit
from servers import (
    BENCH_DIR,
    CLOCK_TICKS,
    GENERATOR_CORE,
    NICENESS,
    NODE_DIR,
    PROJECT_DIR,
    SERVERS,
    Server,
    tree_bytes,
)

PY_SPY = Path(sys.prefix) / "bin" / "py-spy"


def _output(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).strip() or "unknown"


def _npm_version(package: str) -> str:
    try:
        manifest = NODE_DIR / "node_modules" / package / "package.json"
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def environment() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    git = ["git", "-C", str(PROJECT_DIR)]
    collab_python = str(PROJECT_DIR / ".venv" / "bin" / "python")
    versions = "import importlib.metadata as m; print(' '.join(m.version(p) for p in %r))"
    collab_deps = _output(
        [collab_python, "-c", versions % (["pycrdt", "uvicorn", "websockets", "uvloop"],)]
    ).split()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "node": _output(["node", "--version"]),
        "collab_git_commit": _output([*git, "rev-parse", "--short", "HEAD"]),
        "collab_tree_dirty": bool(
            subprocess.run(
                [*git, "status", "--porcelain", "--", "collab"], capture_output=True, text=True
            ).stdout.strip()
        ),
        "collab_pycrdt_uvicorn_websockets_uvloop": collab_deps,
        "y_websocket_server": _npm_version("@y/websocket-server"),
        "hocuspocus": _npm_version("@hocuspocus/server"),
        "yjs": _npm_version("yjs"),
        "ws": _npm_version("ws"),
        "pycrdt_websocket": metadata.version("pycrdt-websocket"),
        "pycrdt_store": metadata.version("pycrdt-store"),
        "bench_uvicorn": metadata.version("uvicorn"),
    }


class Runner:
    def __init__(self, args: argparse.Namespace, run_dir: Path, workdir: Path) -> None:
        self.args = args
        self.run_dir = run_dir
        self.workdir = workdir
        self.records: list[dict[str, Any]] = []
        self.server_runs: list[dict[str, Any]] = []
        self._jsonl = (run_dir / "results.jsonl").open("a")
        self._counter = 0

    def close(self) -> None:
        self._jsonl.close()

    def _emit(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def generate(self, server: Server, spec: dict[str, Any], timeout_s: float) -> list[dict]:
        """Run loadgen.mjs on the generator core; its JSON lines are the results."""
        spec = {
            **spec,
            "url": server.url,
            "hocuspocus": server.kind.hocuspocus,
            "serverPid": server.pid,
            "clockTicks": CLOCK_TICKS,
        }
        cmd = [
            *("nice", "-n", NICENESS, "taskset", "-c", GENERATOR_CORE),
            "node",
            "--max-old-space-size=8192",
            str(NODE_DIR / "loadgen.mjs"),
            json.dumps(spec),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            return [{"error": f"load generator timed out after {timeout_s:.0f}s"}] + [
                json.loads(line)
                for line in (exc.stdout or b"").decode().splitlines()
                if line.startswith("{")
            ]
        with (self.run_dir / "logs" / "loadgen.log").open("a") as log:
            log.write(f"--- {server.kind.name} {spec['scenario']}\n{done.stderr}")
        records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 and not any("error" in r for r in records):
            records.append(
                {"error": f"load generator exited {done.returncode}: {done.stderr[-300:]}"}
            )
        return records or [{"error": "load generator printed nothing"}]

    def run_unit(self, unit: Unit, server_name: str, repeat: int) -> None:
        kind = SERVERS[server_name]
        self._counter += 1
        label = f"{self._counter:03d}-{unit.scenario}-{server_name}"
        log_path = self.run_dir / "logs" / f"{label}.log"
        server = Server(kind, self.workdir / label, log_path, unit.collab_env)
        base = {"scenario": unit.scenario, "config": unit.config, "server": server_name}
        base["repeat"] = repeat
        room_prefix = f"{unit.scenario}-{self._counter}"
        spec = {**unit.spec, "roomPrefix": room_prefix}
        if self.args.deflate:
            spec["deflate"] = True
        profiler = None
        try:
            server.start()
            time.sleep(0.3)
            if self.args.profile and kind.is_collab and unit.profile:
                profiler = self._start_profiler(server, label)
            outputs = self.generate(server, spec, unit.timeout_s)
            if profiler is not None:
                self._stop_profiler(profiler)
                profiler = None
            if unit.scenario == "trace":  # the replay's figures, then its quiet-wait
                outputs = [{k: v for out in outputs for k, v in out.items()}]
            records = [{**base, **out} for out in outputs]
            if unit.scenario == "trace" and not any("error" in r for r in records):
                records += self._after_trace(unit, server, records[-1], spec)
        except Exception as exc:  # one broken server is a row with an error, not a dead run
            records = [{**base, "error": f"{type(exc).__name__}: {exc}"}]
        finally:
            if profiler is not None:
                self._stop_profiler(profiler)
            server.stop()
        found = server.scan()
        self.server_runs.append(
            {
                "run": label,
                "startup_s": round(server.started_s, 3),
                "exit_code": server.returncode,
                "warning_or_error_lines": found.notable_lines,
                "examples": found.examples,
            }
        )
        for record in records:
            self._emit(record)
            print("   ", report.one_line(record), flush=True)

    def _after_trace(
        self, unit: Unit, server: Server, trace: dict[str, Any], spec: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Stored size, then restarts: each followed by one cold load of the trace document."""
        document = f"{spec['roomPrefix']}-trace"
        if not server.kind.has_storage:
            return []
        server.stop()
        trace["stored_bytes_on_disk"] = tree_bytes(server.storage_path)
        cold: list[dict[str, Any]] = []
        for attempt in range(unit.cold_loads):
            server.start()
            time.sleep(0.3)
            cold_spec = {**spec, "scenario": "coldload", "timeoutS": spec["coldTimeoutS"]}
            (out,) = self.generate(server, cold_spec, 120)[-1:]
            base = {"scenario": "coldload", "config": unit.config, "server": server.kind.name}
            cold.append({**base, "repeat": trace["repeat"], "attempt": attempt, **out})
            if attempt == 0 and server.kind.is_collab:
                # After the graceful stop's compaction: the snapshot (+ any log after it).
                trace["stored_size_bytes"] = server.document_size_bytes(document)
            server.wait_quiet()
            server.stop()
        return cold

    def _start_profiler(self, server: Server, label: str) -> subprocess.Popen[bytes]:
        out = self.run_dir / "profiles" / f"{label}.txt"
        out.parent.mkdir(exist_ok=True)
        cmd = ["taskset", "-c", GENERATOR_CORE, str(PY_SPY), "record", "--pid", str(server.pid)]
        cmd += ["--rate", "250", "--nonblocking", "--format", "raw", "-o", str(out)]
        log = (self.run_dir / "logs" / f"{label}.py-spy.log").open("wb")
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # py-spy attaches
        return process

    @staticmethod
    def _stop_profiler(process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def render(run_dir: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Tables on the terminal, summary.md and chart.png from a run's records."""
    summary = report.summarise(records, meta["server_names"])
    print()
    print(report.render_text(summary, meta))
    (run_dir / "summary.md").write_text(report.render_markdown(summary, meta))
    chart.draw(summary, meta["server_names"], run_dir / "chart.png", meta)


def rerender(run_dir: Path) -> int:
    """Render an earlier run again from its run.json and results.jsonl (after a
    change to the report), without running anything."""
    meta = json.loads((run_dir / "run.json").read_text())
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    meta.setdefault("server_names", list(dict.fromkeys(r["server"] for r in records)))
    render(run_dir, records, meta)
    return 0


def run_benchmarks(args: argparse.Namespace) -> tuple[bool, Path]:
    """Run the plan into `args.results_dir`/<timestamp>/; (any record failed, that folder)."""
    began = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir: Path = args.results_dir / stamp
    (run_dir / "logs").mkdir(parents=True)
    env = environment()
    plan = scenarios.quick_plan() if args.quick else scenarios.full_plan(args.duration)
    plan = [u for u in plan if u.scenario in args.scenarios]
    if args.configs:
        plan = [u for u in plan if any(c in u.config for c in args.configs)]
    print(f"machine: {env['cores']} cores, {env['cpu']}; load {env['load_average_at_start']}")
    print(f"servers: {', '.join(args.servers)}; {len(plan)} units x {args.repeat} repeats")
    print(f"results -> {run_dir}", flush=True)
    meta = {
        "started": stamp,
        "command": shlex.join(["bench/run.py", *sys.argv[1:]]),
        "clients_offer_deflate": args.deflate,
        "environment": env,
        "servers": {n: SERVERS[n].description + "; " + SERVERS[n].storage for n in args.servers},
    }
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    with tempfile.TemporaryDirectory(prefix="collab-bench-") as tmp:
        runner = Runner(args, run_dir, Path(tmp))
        try:
            for unit in plan:
                for repeat in range(args.repeat):
                    for name in args.servers:
                        print(
                            f"{unit.scenario} {unit.config}: {name} (run {repeat + 1})", flush=True
                        )
                        runner.run_unit(unit, name, repeat)
        finally:
            runner.close()
    meta["duration_s"] = round(time.perf_counter() - began, 1)
    meta["server_runs"] = runner.server_runs
    meta["server_names"] = args.servers
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    render(run_dir, runner.records, meta)
    if args.profile:
        import profile_summary

        for path in sorted((run_dir / "profiles").glob("*.txt")):
            (path.with_suffix(".top.txt")).write_text(profile_summary.summarise(path))
    noisy = [r for r in runner.server_runs if r["warning_or_error_lines"]]
    for run in noisy:
        print(f"server log {run['run']}: {run['warning_or_error_lines']} warning/error lines")
        for example in run["examples"][:3]:
            print(f"    {example}")
    failed = [r for r in runner.records if r.get("error")]
    print(f"done in {meta['duration_s']} s: {run_dir}/summary.md, chart.png, results.jsonl")
    if failed:
        print(
            "FAILED: " + "; ".join(f"{r['scenario']}/{r['server']}: {r['error']}" for r in failed)
        )
    return bool(failed), run_dir


__all__ = ["BENCH_DIR", "run_benchmarks"]
