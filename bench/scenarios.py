"""The scenarios: what the load generator is asked to do, full and quick.

Each `Unit` is one fresh server and one or more load-generator runs against it.
The generator (bench/node/loadgen.mjs) does the measuring; this module only
says what to run and how long, and turns the generator's JSON into records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TRACE_PATH = "/work/shared/data/editing-traces/automerge-paper.json.gz"
TRACE_EDITS = 259_778


@dataclass(frozen=True)
class Unit:
    scenario: str  # fanout, ramp, awareness, idle, trace, bigdoc
    config: str  # e.g. "10x10@1000/s": the row label
    spec: dict[str, Any]  # for loadgen.mjs (url and pid are added by the runner)
    timeout_s: float = 300.0
    cold_loads: int = 0  # trace: restarts, each followed by one cold join
    profile: bool = False  # py-spy this unit when profiling collab
    collab_env: dict[str, str] = field(default_factory=dict)  # COLLAB_* for this unit only
    extra: dict[str, Any] = field(default_factory=dict)


def fanout_units(shapes: list[tuple[int, int]], rates: list[int], duration_s: float) -> list[Unit]:
    return [
        Unit(
            "fanout",
            f"{rooms}x{clients}@{rate}/s",
            {
                "scenario": "fanout",
                "rooms": rooms,
                "clients": clients,
                "rate": rate,
                "warmupS": 1,
                "durationS": duration_s,
                "drainS": 5,
            },
            timeout_s=60 + duration_s * 2,
            profile=(rooms, clients, rate) in ((10, 10, 1000), (100, 2, 1000)),
        )
        for rooms, clients in shapes
        for rate in rates
    ]


def ramp_unit(rates: list[int], step_s: float) -> Unit:
    return Unit(
        "ramp",
        "100x2 ramp",
        {
            "scenario": "ramp",
            "rooms": 100,
            "clients": 2,
            "rates": rates,
            "p99LimitMs": 100,
            "warmupS": 1,
            "durationS": step_s,
            "drainS": 5,
        },
        timeout_s=60 + len(rates) * (step_s + 8),
        profile=True,
    )


def awareness_unit(duration_s: float) -> Unit:
    return Unit(
        "awareness",
        "50 clients x 10 Hz",
        {
            "scenario": "awareness",
            "clients": 50,
            "hz": 10,
            "warmupS": 1,
            "durationS": duration_s,
            "drainS": 5,
        },
        timeout_s=60 + duration_s * 2,
        profile=True,
    )


def idle_unit(rooms: int, clients: int) -> Unit:
    return Unit(
        "idle",
        f"{rooms * clients} conns / {rooms} rooms",
        {"scenario": "idle", "rooms": rooms, "clients": clients, "settleS": 2, "docChars": 100},
        timeout_s=600,
        profile=True,
    )


def trace_unit(
    edits: int, cold_loads: int, quiet_timeout_s: float, cold_timeout_s: float = 30
) -> Unit:
    """Replay, then stay connected until the server is idle (at most `quiet_timeout_s`),
    stop it, measure the store, and restart it `cold_loads` times for a cold join."""
    label = "full trace" if edits in (0, TRACE_EDITS) else f"first {edits:,} edits"
    return Unit(
        "trace",
        label,
        {
            "scenario": "trace",
            "tracePath": TRACE_PATH,
            "traceCount": edits,
            "timeoutS": 600,
            "quietTimeoutS": quiet_timeout_s,
            "stallS": 60,
            "coldTimeoutS": cold_timeout_s,  # a cold client's wait for the full text
        },
        timeout_s=900,
        cold_loads=cold_loads,
        # One client uploads a whole editing session as fast as the server takes
        # it, with collab's default settings: a fast writer is paced by storage,
        # not closed (before pacing, the default 200 msg/s limit closed it with
        # 4029 and this scenario had to lift the limit).
        profile=True,
    )


def bigdoc_unit(megabytes: int, joiners: int) -> Unit:
    return Unit(
        "bigdoc",
        f"{megabytes} MB, {joiners} joins",
        {
            "scenario": "bigdoc",
            "tracePath": TRACE_PATH,
            "megabytes": megabytes,
            "joiners": joiners,
            "timeoutS": 120,
        },
        timeout_s=600,
    )


def full_plan(duration_s: float = 8.0) -> list[Unit]:
    return [
        *fanout_units([(1, 50), (10, 10), (100, 2)], [200, 500, 1000], duration_s),
        ramp_unit([500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000], 4),
        awareness_unit(duration_s),
        idle_unit(1000, 5),
        trace_unit(0, cold_loads=3, quiet_timeout_s=120),
        bigdoc_unit(50, 20),
    ]


def quick_plan() -> list[Unit]:
    """`make bench-quick`: one of each kind that fits in under two minutes."""
    return [
        *fanout_units([(10, 10)], [500], 3),
        awareness_unit(3),
        trace_unit(20_000, cold_loads=1, quiet_timeout_s=3, cold_timeout_s=5),
    ]


SCENARIO_NAMES = ("fanout", "ramp", "awareness", "idle", "trace", "bigdoc")
