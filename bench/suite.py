"""Runs the workloads against every server and writes the results (inside bench/.venv)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import report
from editing_trace import TRACE_PATH, cached_updates, load_trace
from pycrdt import create_update_message
from servers import BENCH_DIR, NODE_DIR, PROJECT_DIR, TARGETS, Server
from workloads import FanoutResult, JoinResult, ReplayResult, fanout, join, replay

CACHE_DIR = BENCH_DIR / ".cache"
DISTURBED_CPU = 0.15  # cores used by other processes during a measurement
CLIENT_BOUND_CPU = 0.9  # the client process near one full core: it, not the server, may limit
_COMMITS = re.compile(r"collab stopped; (\d+) transactions committed")


def _command_output(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).strip() or "unknown"


def _npm_version(package: str) -> str:
    manifest = NODE_DIR / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def environment() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = ["git", "-C", str(PROJECT_DIR)]
    dirty = _command_output([*git, "status", "--porcelain", "--", "collab"]) not in ("", "unknown")
    collab_python = str(PROJECT_DIR / ".venv" / "bin" / "python")
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "node": _command_output(["node", "--version"]),
        "collab": _command_output(
            [str(PROJECT_DIR / ".venv" / "bin" / "collab"), "--version"]
        ).removeprefix("collab "),
        "collab_git_commit": _command_output([*git, "rev-parse", "--short", "HEAD"]),
        "collab_tree_dirty": dirty,
        "collab_pycrdt": _command_output(
            [collab_python, "-c", "import importlib.metadata as m; print(m.version('pycrdt'))"]
        ),
        "y_websocket_server": _npm_version("@y/websocket-server"),
        "yjs": _npm_version("yjs"),
        "pycrdt_websocket": metadata.version("pycrdt-websocket"),
        "pycrdt_store": metadata.version("pycrdt-store"),
        "pycrdt_clients": metadata.version("pycrdt"),
        "websockets": metadata.version("websockets"),
        "uvicorn": metadata.version("uvicorn"),
    }


class Runner:
    """Starts a fresh server per (workload, target), keeps its log, collects findings."""

    def __init__(self, run_dir: Path, workdir: Path) -> None:
        self.run_dir = run_dir
        self.workdir = workdir
        self.findings: list[dict[str, Any]] = []

    async def with_server(
        self,
        label: str,
        target_name: str,
        body: Callable[[Server], Awaitable[Any]],
        on_error: Callable[[str], Any],
        *,
        extra_args: tuple[str, ...] = (),
    ) -> Any:
        """Run `body` against a fresh server; a failure becomes `on_error(message)`, so
        one broken server is reported in its row instead of ending the whole run."""
        target = TARGETS[target_name]
        workdir = self.workdir / f"{label}-{target_name}"
        workdir.mkdir(parents=True)
        log_path = self.run_dir / "logs" / f"{label}-{target_name}.log"
        server = Server(target, workdir, log_path, extra_args=extra_args)
        try:
            await server.start()
            result = await body(server)
        except Exception as exc:  # reported in the results, with the server's log kept
            result = on_error(f"{type(exc).__name__}: {exc}")
        finally:
            await server.stop()
        found = server.scan()
        commits = _COMMITS.findall(log_path.read_text(errors="replace"))
        self.findings.append(
            {
                "run": f"{label}/{target_name}",
                "args": list(extra_args),
                "startup_s": round(server.started_s, 3),
                "shutdown_s": round(server.stop_s, 3),
                "exit_code": server.returncode,
                "warning_or_error_lines": found.notable_lines,
                "examples": found.examples,
                "transactions_committed": int(commits[-1]) if commits else None,
                "log": str(log_path.relative_to(self.run_dir)),
            }
        )
        return result


@dataclass(frozen=True)
class Plan:
    """What every workload needs: the arguments and the trace prepared once."""

    args: argparse.Namespace
    count: int
    frames: list[bytes]
    expected_text: str
    timeout_s: float


def _replay_failed(name: str, count: int, error: str) -> ReplayResult:
    return ReplayResult(name, count, error=error)


def _fanout_failed(name: str, args: argparse.Namespace, error: str) -> FanoutResult:
    return FanoutResult(name, args.readers, args.fanout_updates, args.interval_ms, error=error)


async def workload_a(plan: Plan, runner: Runner) -> tuple[list[dict[str, Any]], list[report.Table]]:
    results = []
    for name in plan.args.targets:
        print(f"A replay: {name} ...", flush=True)
        result = await runner.with_server(
            "A",
            name,
            lambda s: replay(
                s,
                plan.frames,
                plan.expected_text,
                repeats=plan.args.repeat,
                timeout_s=plan.timeout_s,
            ),
            partial(_replay_failed, name, plan.count),
        )
        results.append(dataclasses.asdict(result))
    title = f"A. Trace replay: {plan.count:,} automerge-paper updates, 1 writer -> 1 reader"
    note = (
        "updates/s: higher is better; durable = every update also in the store; "
        "CPU = core-seconds per second"
    )
    return results, [
        report.results_table(title, results, report.REPLAY_COLUMNS, note),
        report.ratio_table("A. Ratios", results, report.REPLAY_METRICS),
    ]


async def workload_b(plan: Plan, runner: Runner) -> tuple[list[dict[str, Any]], list[report.Table]]:
    args = plan.args
    results = []
    for name in args.targets:
        print(f"B fan-out: {name} ...", flush=True)
        result = await runner.with_server(
            "B",
            name,
            lambda s: fanout(
                s,
                readers=args.readers,
                updates=args.fanout_updates,
                interval_ms=args.interval_ms,
                repeats=args.repeat,
                timeout_s=30.0,
            ),
            partial(_fanout_failed, name, args),
        )
        results.append(dataclasses.asdict(result))
    title = (
        f"B. Fan-out latency: 1 writer, {args.readers} readers, "
        f"{args.fanout_updates} updates every {args.interval_ms:g} ms"
    )
    note = "latency = writer's send -> reader's receive; lower is better"
    return results, [
        report.results_table(title, results, report.FANOUT_COLUMNS, note),
        report.ratio_table("B. Ratios", results, report.FANOUT_METRICS),
    ]


def _join_failed(name: str, mode: str, count: int, error: str) -> JoinResult:
    return JoinResult(name, mode, count, error=error)


async def workload_c(plan: Plan, runner: Runner) -> tuple[list[dict[str, Any]], list[report.Table]]:
    results = []
    for name in plan.args.targets:
        for mode in ("live", "disk") if TARGETS[name].durable else ("live",):
            print(f"C join ({mode}): {name} ...", flush=True)
            extra = ("--room-grace", "0") if (name, mode) == ("collab", "disk") else ()

            async def body(server: Server, mode: str = mode) -> Any:
                return await join(
                    server,
                    plan.frames,
                    plan.expected_text,
                    mode=mode,
                    joins=plan.args.joins,
                    timeout_s=plan.timeout_s,
                )

            failed = partial(_join_failed, name, mode, plan.count)
            result = await runner.with_server(f"C-{mode}", name, body, failed, extra_args=extra)
            results.append(dataclasses.asdict(result))
    tables = []
    for mode, what in (
        ("live", "document in memory (another client keeps it open)"),
        ("disk", "document only in storage (loaded for each join)"),
    ):
        rows = [r for r in results if r["mode"] == mode]
        if not rows:
            continue
        title = f"C. Cold join, {what}: {plan.count:,}-update document, {plan.args.joins} joins"
        note = "connect -> synced (step 2 applied); lower is better"
        if mode == "disk":
            note += "; collab runs with --room-grace 0 here so that every join loads from disk"
        tables += [
            report.results_table(title, rows, report.JOIN_COLUMNS, note),
            report.ratio_table(f"C ({mode}). Ratios", rows, report.JOIN_METRICS),
        ]
    return results, tables


WORKLOAD_RUNNERS = {"A": workload_a, "B": workload_b, "C": workload_c}


async def run_workloads(
    plan: Plan, runner: Runner
) -> tuple[dict[str, list[dict[str, Any]]], list[report.Table]]:
    results: dict[str, list[dict[str, Any]]] = {}
    tables: list[report.Table] = []
    for workload in plan.args.workloads:
        results[workload], new_tables = await WORKLOAD_RUNNERS[workload](plan, runner)
        tables += new_tables
        for table in new_tables:
            print()
            print(report.to_text(table))
        print(flush=True)
    return results, tables


def run_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir: Path = args.results_dir / stamp
    run_dir.mkdir(parents=True)
    env = environment()
    env["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    print(f"machine: {env['cores']} cores, {env['cpu']}; results -> {run_dir}", flush=True)

    trace = load_trace()
    count = len(trace.txns) if args.updates == 0 else min(args.updates, len(trace.txns))
    updates, generated_s = cached_updates(trace, count, CACHE_DIR)
    expected = trace.text_after(count)
    source = f"generated in {generated_s:.1f}s" if generated_s else "from the cache"
    print(
        f"trace: {count:,} updates ({sum(map(len, updates)):,} bytes, {source}); "
        f"text at K: {len(expected):,} chars",
        flush=True,
    )
    plan = Plan(
        args=args,
        count=count,
        frames=[create_update_message(update) for update in updates],
        expected_text=expected,
        timeout_s=max(60.0, count / 500),
    )
    with tempfile.TemporaryDirectory(prefix="collab-bench-") as tmp:
        runner = Runner(run_dir, Path(tmp))
        results, tables = asyncio.run(run_workloads(plan, runner))

    duration = round(time.perf_counter() - began, 1)
    failed = [
        f"{w}/{r['target']}" + (f"/{r['mode']}" if "mode" in r else "")
        for w, rs in results.items()
        for r in rs
        if r.get("error")
    ]
    summary: dict[str, Any] = {
        "started": stamp,
        "command": shlex.join(["python", "bench/run.py", *sys.argv[1:]]),
        "duration_s": duration,
        "arguments": {
            "workloads": args.workloads,
            "targets": args.targets,
            "updates": count,
            "readers": args.readers,
            "fanout_updates": args.fanout_updates,
            "interval_ms": args.interval_ms,
            "joins": args.joins,
            "repeat": args.repeat,
        },
        "environment": env,
        "trace": {"path": str(TRACE_PATH), "sha256": trace.sha256, "updates": count},
        "results": results,
        "server_runs": runner.findings,
        "failed": failed,
    }
    (run_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (run_dir / "summary.md").write_text(markdown_summary(summary, tables))
    print_findings(runner.findings)
    print(f"done in {duration}s; {run_dir / 'summary.md'}", flush=True)
    if failed:
        print("FAILED runs: " + ", ".join(failed), flush=True)
    return summary


def print_findings(findings: list[dict[str, Any]]) -> None:
    noisy = [f for f in findings if f["warning_or_error_lines"]]
    print("\nserver logs: " + ("no warnings or errors" if not noisy else ""))
    for finding in noisy:
        print(f"  {finding['run']}: {finding['warning_or_error_lines']} warning/error lines")
        for example in finding["examples"][:4]:
            print(f"    {example}")


CAVEATS = """\
**Not like-for-like.** collab commits every update to SQLite (WAL, synchronous=NORMAL,
group commit) *before* relaying it to anyone, the sender included. The Node server
(@y/websocket-server, no persistence configured) and pycrdt-ws keep documents in memory
only: a restart loses everything. pycrdt-ws+sqlite writes each update to its
SQLiteYStore in the background *after* relaying it (its "durable updates/s" waits for
the rows to appear). So collab pays for a guarantee the in-memory peers do not give.

All processes share one 2-core machine: the server under test, and one Python client
process running every benchmark client (asyncio, `websockets` + pycrdt). The CPU
columns (core-seconds per second) show who was busy: a server near 1.0 is saturated
(all four are single-threaded event loops, plus collab's SQLite thread); "other CPU" is
everything else on the machine in the same window: well above 0.1, the run was disturbed.
"""


def markdown_summary(summary: dict[str, Any], tables: list[report.Table]) -> str:
    env = summary["environment"]
    lines = [
        f"# Benchmark run {summary['started']} UTC",
        "",
        f"Machine: {env['cores']} cores ({env['cpu']}), {env['memory_gib']} GiB; {env['os']}.",
        f"Duration: {summary['duration_s']} s. Command: `{summary['command']}`.",
        "",
        f"- collab {env['collab']} (commit {env['collab_git_commit']}"
        f"{', uncommitted changes in collab/' if env['collab_tree_dirty'] else ''}), "
        f"pycrdt {env['collab_pycrdt']}, default settings, temp SQLite file",
        f"- @y/websocket-server {env['y_websocket_server']} with yjs {env['yjs']} "
        f"on Node {env['node']}: **in memory, no persistence**",
        f"- pycrdt-websocket {env['pycrdt_websocket']} (pycrdt-store {env['pycrdt_store']}) "
        f"on uvicorn {env['uvicorn']}, in memory and with SQLiteYStore",
        f"- clients: Python {env['python']}, websockets {env['websockets']}, "
        f"pycrdt {env['pycrdt_clients']}",
        "",
        CAVEATS,
        "Ratios are collab / peer; each cell says whether that is better or worse for collab.",
        "",
    ]
    disturbed = [
        f"{workload}/{r['target']} ({r['other_cpu']:.2f})"
        for workload, rows in summary["results"].items()
        for r in rows
        if isinstance(r.get("other_cpu"), float) and r["other_cpu"] > DISTURBED_CPU
    ]
    if disturbed:
        lines += [
            f"**Disturbed:** other processes used more than {DISTURBED_CPU} cores during "
            + ", ".join(disturbed)
            + "; treat those numbers with care.",
            "",
        ]
    client_bound = [
        f"{workload}/{r['target']} ({r['client_cpu']:.2f})"
        for workload, rows in summary["results"].items()
        for r in rows
        if isinstance(r.get("client_cpu"), float) and r["client_cpu"] >= CLIENT_BOUND_CPU
    ]
    if client_bound:
        lines += [
            "**Client-bound:** the benchmark client used a whole core during "
            + ", ".join(client_bound)
            + ": that server may be faster than measured (its number is a lower bound).",
            "",
        ]
    for table in tables:
        lines.append(report.to_markdown(table))
    lines += ["## Server logs", ""]
    for finding in summary["server_runs"]:
        extra = (
            f", {finding['transactions_committed']} transactions committed"
            if finding["transactions_committed"] is not None
            else ""
        )
        lines.append(
            f"- {finding['run']}{' ' + ' '.join(finding['args']) if finding['args'] else ''}: "
            f"{finding['warning_or_error_lines']} warning/error lines, startup "
            f"{finding['startup_s']} s, shutdown {finding['shutdown_s']} s{extra}"
        )
        lines.extend(f"  - `{example}`" for example in finding["examples"][:4])
    if summary["failed"]:
        lines += ["", "**Failed runs:** " + ", ".join(summary["failed"])]
    return "\n".join(lines) + "\n"
