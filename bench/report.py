"""Tables and ratios: plain text for the terminal, Markdown and JSON for bench/results/.

Every ratio is collab's number divided by the peer's. Whether above 1 is good
depends on the metric, so each table says which way is better and each ratio
cell carries a verdict ("collab 1.8x faster" / "collab 1.3x slower").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from servers import PEERS, TARGETS


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool


@dataclass(frozen=True)
class Table:
    title: str
    note: str
    columns: list[str]
    rows: list[list[str]]


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return " / ".join(_fmt(v) for v in value)
    return str(value)


def ratio_cell(collab: Any, peer: Any, higher_is_better: bool) -> str:
    if not isinstance(collab, int | float) or not isinstance(peer, int | float):
        return "n/a"
    if math.isnan(collab) or math.isnan(peer) or collab <= 0 or peer <= 0:
        return "n/a"
    ratio = collab / peer
    better = ratio >= 1 if higher_is_better else ratio <= 1
    factor = ratio if ratio >= 1 else 1 / ratio
    if abs(factor - 1) < 0.05:
        verdict = "about equal"
    else:
        verdict = f"collab {factor:.2f}x {'better' if better else 'worse'}"
    return f"{ratio:.2f} ({verdict})"


def results_table(
    title: str,
    results: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    note: str,
) -> Table:
    header = ["server", "storage", *[label for _, label in columns], "error"]
    rows = []
    for result in results:
        target = TARGETS[result["target"]]
        row = [target.name, target.storage]
        row += [_fmt(result.get(key)) for key, _ in columns]
        row.append(result.get("error") or "")
        rows.append(row)
    return Table(title, note, header, rows)


def ratio_table(title: str, results: Sequence[dict[str, Any]], metrics: Sequence[Metric]) -> Table:
    by_target = {r["target"]: r for r in results}
    collab = by_target.get("collab")
    header = ["metric (better)", *[f"collab / {peer}" for peer in PEERS if peer in by_target]]
    rows = []
    for metric in metrics:
        direction = "higher" if metric.higher_is_better else "lower"
        row = [f"{metric.label} ({direction})"]
        for peer in PEERS:
            if peer not in by_target:
                continue
            if collab is None:
                row.append("n/a")
                continue
            row.append(
                ratio_cell(
                    collab.get(metric.key), by_target[peer].get(metric.key), metric.higher_is_better
                )
            )
        rows.append(row)
    return Table(title, "ratio = collab / peer", header, rows)


def to_text(table: Table) -> str:
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [table.title, "-" * len(table.title)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines.append(fmt.format(*table.columns).rstrip())
    lines.extend(fmt.format(*row).rstrip() for row in table.rows)
    if table.note:
        lines.append(f"({table.note})")
    return "\n".join(lines)


def to_markdown(table: Table) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = [f"### {table.title}", ""]
    if table.note:
        lines += [table.note, ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines.extend("| " + " | ".join(escape(c) for c in row) + " |" for row in table.rows)
    return "\n".join(lines) + "\n"


REPLAY_COLUMNS = [
    ("updates", "updates"),
    ("updates_per_s", "updates/s"),
    ("runs_updates_per_s", "all runs"),
    ("seconds", "seconds"),
    ("durable_updates_per_s", "durable updates/s"),
    ("text_ok", "text ok"),
    ("server_cpu", "server CPU"),
    ("client_cpu", "client CPU"),
    ("other_cpu", "other CPU"),
    ("server_peak_rss_mb", "server peak RSS MiB"),
]
REPLAY_METRICS = [
    Metric("updates_per_s", "updates/s relayed", True),
    Metric("durable_updates_per_s", "updates/s durable", True),
    Metric("server_peak_rss_mb", "server peak RSS", False),
]
FANOUT_COLUMNS = [
    ("readers", "readers"),
    ("samples", "deliveries"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("server_cpu", "server CPU"),
    ("client_cpu", "client CPU"),
    ("other_cpu", "other CPU"),
    ("server_peak_rss_mb", "server peak RSS MiB"),
]
FANOUT_METRICS = [
    Metric("p50_ms", "p50 latency", False),
    Metric("p95_ms", "p95 latency", False),
    Metric("p99_ms", "p99 latency", False),
]
JOIN_COLUMNS = [
    ("updates", "doc updates"),
    ("joins", "joins"),
    ("median_ms", "median ms"),
    ("p95_ms", "p95 ms"),
    ("min_ms", "min ms"),
    ("max_ms", "max ms"),
    ("sync_bytes", "bytes to sync"),
    ("preload_s", "preload s"),
]
JOIN_METRICS = [
    Metric("median_ms", "median join", False),
    Metric("p95_ms", "p95 join", False),
]
