"""The kept baselines: bench/baselines/<kind>/ holds the latest run of each kind.

Every run writes bench/runs/<UTC timestamp>/, which git ignores. A run becomes
the baseline of its kind when promoted (`bench/run.py --baseline` at the end of
the run, or `bench/run.py --promote bench/runs/<timestamp>` afterwards): its
results.jsonl, summary.md, chart.png, run.json and profiles/ replace the previous
baseline of that kind; its logs/ stay behind. The run's own run.json (start time,
command, collab's commit) goes with it, so a baseline always says where it came
from.

The kind is read from the command the run recorded, so that a run only replaces
a run that measured the same thing. Stdlib only: run.py promotes before it sets
up bench/.venv.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BASELINES_DIR = BENCH_DIR / "baselines"
RUNS_DIR = BENCH_DIR / "runs"
KEPT = ("run.json", "results.jsonl", "summary.md", "chart.png", "profiles")


def run_kind(args: argparse.Namespace, all_scenarios: tuple[str, ...]) -> str:
    """`profile` (py-spy: figures perturbed), `quick` (`make bench-quick`), `full`
    (`make bench`: every scenario, every row), else the scenarios it ran in plan
    order (`fanout`, `fanout-awareness`, `bigdoc`, ...); `-deflate` when the
    clients offered permessage-deflate. Servers, repeats and durations do not
    change the kind."""
    if args.profile:
        return "profile"
    if args.quick:
        kind = "quick"
    elif set(args.scenarios) == set(all_scenarios) and not args.configs:
        kind = "full"
    else:
        kind = "-".join(s for s in all_scenarios if s in args.scenarios)
    return f"{kind}-deflate" if args.deflate else kind


def promote(run_dir: Path, kind: str) -> Path:
    """Copy what a baseline keeps of `run_dir` over bench/baselines/<kind>/."""
    if not (run_dir / "run.json").is_file() or not (run_dir / "results.jsonl").is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run (no run.json/results.jsonl)")
    target = BASELINES_DIR / kind
    if target.resolve() == run_dir.resolve():
        return target
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in KEPT:
        source = run_dir / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        elif source.is_file():
            shutil.copy2(source, target / name)
    return target


__all__ = ["BASELINES_DIR", "RUNS_DIR", "promote", "run_kind"]
