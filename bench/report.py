"""Tables: per scenario, per server, the median over repeats, with ratios against the
reference server (@y/websocket-server) of the same run; and the issue's targets."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from servers import REFERENCE

Summary = dict[str, Any]

# (key, column label): what every scenario that tracks deliveries reports.
DELIVERY_COLUMNS = [
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("delivered_per_s", "delivered/s"),
    ("server_cpu_us_per_delivery", "srv CPU us/deliv"),
    ("server_cpu_util", "srv CPU"),
    ("gen_cpu_util", "gen CPU"),
    ("other_cpu_util", "other CPU"),
    ("missing", "missing"),
]
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "fanout": [
        *DELIVERY_COLUMNS,
        ("rooms_converged", "rooms ok"),
        ("server_rss_kb", "RSS kB"),
    ],
    "ramp": [
        ("saturation_rate", "saturation/s"),
        ("sat_p99_ms", "p99 ms @sat"),
        ("sat_cpu_us", "srv CPU us/deliv @sat"),
        ("sat_gen_cpu", "gen CPU @sat"),
        ("rooms_converged", "rooms ok"),
        ("failure", "next step failed on"),
    ],
    "awareness": [*DELIVERY_COLUMNS, ("final_states_missing", "final missing")],
    "idle": [
        ("rss_per_connection_kb", "kB/conn"),
        ("rss_per_room_kb", "kB/room"),
        ("connect_all_s", "connect+sync all s"),
        ("first_per_room_ms", "first joins ms"),
        ("connect_rest_ms", "later connects ms"),
        ("rss_all_connected_kb", "RSS kB"),
        ("content_ok", "content ok"),
        ("closed_by_server", "closed"),
    ],
    "trace": [
        ("total_s", "total s"),
        ("edits_per_s", "edits/s"),
        ("text_ok", "text ok"),
        ("server_cpu_us_per_edit", "srv CPU us/edit"),
        ("gen_cpu_util", "gen CPU"),
        ("after_replay_quiet_s", "idle after s"),
        ("final_state_bytes", "state B"),
        ("stored_size_bytes", "stored B (API)"),
        ("stored_bytes_on_disk", "on disk B"),
        ("server_hwm_kb", "peak RSS kB"),
    ],
    "coldload": [
        ("full_text_ms", "full text ms"),
        ("first_load_ms", "1st load after restart ms"),
        ("max_ms", "max ms"),
        ("synced_ms", "step 2 ms"),
        ("text_ok", "text ok"),
        ("sync_bytes", "bytes"),
    ],
    "bigdoc": [
        ("join_deflate_offered_s", "join s"),
        ("join_deflate_offered_wire_bytes", "wire B"),
        ("join_deflate_offered_negotiated", "deflate"),
        ("joiners_synced", "joined"),
        ("joiners_all_s", "20 joins s"),
        ("server_rss_before_join_kb", "RSS before kB"),
        ("server_rss_peak_during_joins_kb", "RSS peak kB"),
    ],
}
# (key, label, higher is better)
RATIOS: dict[str, list[tuple[str, str, bool]]] = {
    "fanout": [("server_cpu_us_per_delivery", "CPU/deliv", False), ("p99_ms", "p99", False)],
    "ramp": [("saturation_rate", "saturation", True)],
    "awareness": [("server_cpu_us_per_delivery", "CPU/deliv", False), ("p99_ms", "p99", False)],
    "idle": [
        ("rss_per_connection_kb", "kB/conn", False),
        ("rss_per_room_kb", "kB/room", False),
        ("connect_all_s", "connect all", False),
        ("connect_rest_ms", "later connects", False),
    ],
    "trace": [("total_s", "time", False)],
    "coldload": [("full_text_ms", "time", False)],
    "bigdoc": [("server_rss_peak_during_joins_kb", "RSS peak", False)],
}
ORDER = ["fanout", "ramp", "awareness", "idle", "trace", "coldload", "bigdoc"]


def _median(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(values):
        return statistics.median(numbers)
    if all(isinstance(v, bool) for v in values) and values:
        return all(values)
    return values[-1] if values else None


def _ramp_row(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The ramp's summary record plus the figures of its highest passing step."""
    final = next((r for r in records if "saturation_rate" in r), {})
    steps = [r for r in records if r.get("step") and not r.get("retried")]
    passed = [s for s in steps if s.get("passed")]
    failed = [s for s in steps if not s.get("passed")]
    row = dict(final)
    if passed:
        best = passed[-1]
        row |= {"sat_p99_ms": best["p99_ms"], "sat_cpu_us": best["server_cpu_us_per_delivery"]}
        row["sat_gen_cpu"] = best["gen_cpu_util"]
    if failed:
        row["failure"] = f"{failed[0]['offered_rate']}/s: {failed[0]['failure']}"
    if any("error" in r for r in records):
        row["error"] = next(r["error"] for r in records if "error" in r)
    return row


def summarise(records: list[dict[str, Any]], servers: list[str]) -> Summary:
    """scenario -> config -> server -> {metric: median over repeats, "runs": n}."""
    grouped: dict[tuple[str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        # Each cold load (one per restart) is a sample of its own.
        repeat = (r.get("repeat", 0), r.get("attempt", 0))
        grouped[(r["scenario"], r["config"], r["server"], repeat)].append(r)
    per_run: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for (scenario, config, server, _), rs in grouped.items():
        if scenario == "ramp":
            row = _ramp_row(rs)
        else:
            row = {}
            for r in rs:
                row.update(r)
        per_run[(scenario, config, server)].append(row)
    summary: Summary = {}
    for (scenario, config, server), rows in per_run.items():
        keys = {k for row in rows for k in row}
        merged = {k: _median([row[k] for row in rows if k in row]) for k in keys}
        if scenario == "ramp" and len(rows) > 1:
            # Capacity: a disturbance can only lower it, so the best run counts.
            best = max(rows, key=lambda row: row.get("saturation_rate") or 0)
            merged.update({k: v for k, v in best.items() if k != "all_runs"})
        if scenario == "coldload":
            # The first load after a restart can differ (a store compacting on load).
            firsts = [row.get("full_text_ms") for row in rows if row.get("attempt") == 0]
            merged["first_load_ms"] = _median(firsts) if firsts else None
            loads = [row.get("full_text_ms") for row in rows]
            # A load that never completed has no time: the max is then unknown.
            merged["max_ms"] = None if None in loads else max(loads)
        merged["runs"] = len(rows)
        merged["all_runs"] = rows
        summary.setdefault(scenario, {}).setdefault(config, {})[server] = merged
    summary["_servers"] = servers
    return summary


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(value: Any, reference: Any) -> float | None:
    if not isinstance(value, int | float) or not isinstance(reference, int | float):
        return None
    if isinstance(value, bool) or reference <= 0 or value < 0:
        return None
    return value / reference


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


def scenario_tables(summary: Summary) -> list[Table]:
    tables = []
    servers: list[str] = summary["_servers"]
    for scenario in ORDER:
        if scenario not in summary:
            continue
        columns = COLUMNS[scenario]
        ratios = RATIOS[scenario]
        header = ["config", "server", *[label for _, label in columns]]
        header += [f"{label} vs ref" for _, label, _ in ratios] + ["runs", "error"]
        rows = []
        for config, by_server in summary[scenario].items():
            reference = by_server.get(REFERENCE, {})
            for server in servers:
                if server not in by_server:
                    continue
                row = by_server[server]
                cells = [config, server, *[fmt(row.get(key)) for key, _ in columns]]
                for key, _, _ in ratios:
                    r = ratio(row.get(key), reference.get(key))
                    cells.append("-" if r is None else f"{r:.2f}x")
                cells += [str(row["runs"]), str(row.get("error") or "")[:80]]
                rows.append(cells)
        note = "ratios = server / @y/websocket-server in the same run; " + ", ".join(
            f"{label}: {'higher' if hib else 'lower'} is better" for _, label, hib in ratios
        )
        tables.append(Table(scenario, header, rows, note))
    return tables


def _get(summary: Summary, scenario: str, config_prefix: str, server: str) -> dict[str, Any]:
    for config, by_server in summary.get(scenario, {}).items():
        if config.startswith(config_prefix) and server in by_server:
            return by_server[server]
    return {}


def targets(summary: Summary, server: str = "collab") -> Table:
    """The issue's targets for `server`, each against the reference in the same run."""
    rows: list[list[str]] = []

    def add(what: str, target: str, value: Any, ref: Any, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "MISSED")
        rows.append([what, target, fmt(value), fmt(ref), verdict])

    def rows_of(scenario: str, config: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
        return _get(summary, scenario, config, server), _get(summary, scenario, config, REFERENCE)

    def relative(what: str, scenario: str, config: str, key: str, limit: float) -> None:
        row, ref = rows_of(scenario, config)
        r = ratio(row.get(key), ref.get(key))
        ok = None if r is None else r <= limit
        add(what, f"<= {limit}x", r and f"{r:.2f}x", ref.get(key), ok)

    def at_most(what: str, scenario: str, config: str, key: str, limit: float, unit: str) -> None:
        row, ref = rows_of(scenario, config)
        v = row.get(key)
        # Latency targets also require that nothing was dropped; text, that it is right.
        ok = None if v is None else v <= limit and not row.get("missing")
        if ok is not None and "text_ok" in row:
            ok = ok and bool(row["text_ok"])
        add(what, f"<= {limit:g} {unit}", v, ref.get(key), ok)

    # Issue 13's targets (the connection edge), then the earlier absolute ones.
    relative("fan-out 10x10@1000/s: CPU per delivery vs ref", "fanout", "10x10@1000",
             "server_cpu_us_per_delivery", 0.5)  # fmt: skip
    relative("fan-out 10x10@1000/s: p99 vs ref", "fanout", "10x10@1000", "p99_ms", 1.0)
    at_most("fan-out 10x10@1000/s: p99 relay latency", "fanout", "10x10@1000", "p99_ms", 20, "ms")
    s, sr = rows_of("ramp")
    sat, ref_sat = (s.get("saturation_rate") if s else None), sr.get("saturation_rate")
    add("100x2 ramp: saturation (p99 < 100 ms, nothing dropped) vs ref", ">= ref", sat, ref_sat,
        None if not s or not ref_sat else (sat or 0) >= ref_sat)  # fmt: skip
    relative("awareness 50x10 Hz: CPU per delivery vs ref", "awareness", "",
             "server_cpu_us_per_delivery", 1.0)  # fmt: skip
    relative("awareness 50x10 Hz: p99 vs ref", "awareness", "", "p99_ms", 1.0)
    at_most("awareness 50x10 Hz: p99, every state delivered", "awareness", "", "p99_ms", 10, "ms")
    at_most("idle: RSS per connection (5,000 conns)", "idle", "", "rss_per_connection_kb", 8, "kB")
    relative("idle: connecting the 4,000 later clients vs ref", "idle", "", "connect_rest_ms", 1.0)
    relative("idle: connect + sync all 5,000 vs ref", "idle", "", "connect_all_s", 1.0)
    at_most("idle: RSS per loaded small room", "idle", "", "rss_per_room_kb", 100, "kB")
    t, tr = rows_of("trace")
    relative(f"trace replay ({t.get('edits', '?')} edits): CPU per edit vs ref", "trace", "",
             "server_cpu_us_per_edit", 0.6)  # fmt: skip
    relative("trace replay: total time vs ref", "trace", "", "total_s", 1.0)
    add("trace replay: final text correct", "yes", t.get("text_ok"), tr.get("text_ok"),
        t.get("text_ok") if t else None)  # fmt: skip
    stored, state = t.get("stored_size_bytes"), t.get("final_state_bytes")
    add("trace: stored size after compaction / final state", "<= 2x",
        stored and state and f"{stored / state:.2f}x", tr.get("stored_bytes_on_disk"),
        None if not stored or not state else stored <= 2 * state)  # fmt: skip
    at_most("cold load of the trace document after restart", "coldload", "", "full_text_ms",
            200, "ms")  # fmt: skip
    at_most("50 MB document to a new client (loopback)", "bigdoc", "", "join_deflate_offered_s",
            30, "s")  # fmt: skip
    b, _ = rows_of("bigdoc")
    growth = None
    if b.get("server_rss_peak_during_joins_kb") and b.get("server_rss_before_join_kb"):
        growth = (b["server_rss_peak_during_joins_kb"] - b["server_rss_before_join_kb"]) / 1024
    doc_mb = b.get("megabytes")
    add("20 joins of the 50 MB doc: RSS growth MB", "<= 4x doc size", growth and round(growth),
        None, None if growth is None or not doc_mb else growth <= 4 * doc_mb)  # fmt: skip
    relative("20 joins of the 50 MB doc: total time vs ref", "bigdoc", "", "joiners_all_s", 1.0)
    title = f"targets for {server} (ref = {REFERENCE} in the same run)"
    return Table(title, ["target", "wanted", server, "ref", "verdict"], rows)


def one_line(record: dict[str, Any]) -> str:
    if record.get("error"):
        return f"ERROR {record['error']}"
    keys = [k for k, _ in COLUMNS.get(record["scenario"], [])][:6]
    if record.get("step"):
        keys = ["offered_rate", "p99_ms", "missing", "server_cpu_util", "gen_cpu_util", "passed"]
    return ", ".join(f"{k}={fmt(record.get(k))}" for k in keys if k in record)


def to_text(table: Table) -> str:
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [f"== {table.title} ==", line.format(*table.columns).rstrip()]
    out += [line.format(*row).rstrip() for row in table.rows]
    if table.note:
        out.append(f"({table.note})")
    return "\n".join(out)


def to_markdown(table: Table) -> str:
    out = [f"### {table.title}", ""]
    if table.note:
        out += [table.note, ""]
    out.append("| " + " | ".join(table.columns) + " |")
    out.append("|" + "---|" * len(table.columns))
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table.rows]
    return "\n".join(out) + "\n"


def _header(meta: dict[str, Any]) -> list[str]:
    env = meta["environment"]
    dirty = " (collab/ modified)" if env["collab_tree_dirty"] else ""
    deps = " ".join(env["collab_pycrdt_uvicorn_websockets_uvloop"])
    return [
        f"run {meta['started']} UTC, {meta.get('duration_s', '?')} s: `{meta['command']}`",
        f"machine: {env['cores']} cores ({env['cpu']}), {env['memory_gib']} GiB, "
        f"load at start {env['load_average_at_start']}; server on core 0, generator on core 1; "
        + (
            "clients offer permessage-deflate (as browsers do)"
            if meta.get("clients_offer_deflate")
            else "clients do not offer permessage-deflate"
        ),
        f"collab {env['collab_git_commit']}{dirty}"
        f" (pycrdt, uvicorn, websockets, uvloop: {deps}); "
        f"@y/websocket-server {env['y_websocket_server']} + LevelDB; "
        f"hocuspocus {env['hocuspocus']}; "
        f"pycrdt-websocket {env['pycrdt_websocket']} + pycrdt-store {env['pycrdt_store']}; "
        f"yjs {env['yjs']}, node {env['node']}",
    ]


def render_text(summary: Summary, meta: dict[str, Any]) -> str:
    parts = ["\n".join(_header(meta))]
    parts += [to_text(t) for t in scenario_tables(summary)]
    if "collab" in summary["_servers"]:
        parts.append(to_text(targets(summary)))
    return "\n\n".join(parts)


def render_markdown(summary: Summary, meta: dict[str, Any]) -> str:
    parts = ["# Benchmark run " + meta["started"], "", *[f"- {line}" for line in _header(meta)], ""]
    if "collab" in summary["_servers"]:
        parts.append(to_markdown(targets(summary)))
    parts += [to_markdown(t) for t in scenario_tables(summary)]
    parts.append("![chart](chart.png)\n")
    return "\n".join(parts)
