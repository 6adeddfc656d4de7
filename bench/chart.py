"""One PNG comparing the servers: a panel per headline figure (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {
    "collab": "#d62728",
    "y-websocket": "#1f77b4",
    "pycrdt-websocket": "#2ca02c",
    "hocuspocus": "#9467bd",
}
_SPARE = ["#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

# (scenario, metric key, panel title, log scale, scale factor)
PANELS = [
    (
        "fanout",
        "server_cpu_us_per_delivery",
        "fan-out: server CPU per delivered update (us)",
        True,
        1,
    ),
    ("fanout", "p99_ms", "fan-out: p99 relay latency (ms)", True, 1),
    ("ramp", "saturation_rate", "100x2 ramp: saturation (updates/s)", False, 1),
    (
        "awareness",
        "server_cpu_us_per_delivery",
        "awareness 50x10 Hz: CPU per delivery (us)",
        False,
        1,
    ),
    ("awareness", "p99_ms", "awareness 50x10 Hz: p99 latency (ms)", False, 1),
    ("idle", "rss_per_connection_kb", "idle: RSS per connection (kB)", False, 1),
    ("idle", "rss_per_room_kb", "idle: RSS per small room (kB)", False, 1),
    ("trace", "total_s", "trace replay: total time (s)", False, 1),
    ("coldload", "full_text_ms", "cold load after restart (ms)", True, 1),
    (
        "bigdoc",
        "server_rss_peak_during_joins_kb",
        "50 MB doc, 20 joins: peak RSS (MB)",
        False,
        1 / 1024,
    ),
]


def draw(summary: dict[str, Any], servers: list[str], path: Path, meta: dict[str, Any]) -> None:
    panels = [p for p in PANELS if p[0] in summary]
    if not panels:
        return
    colours = dict(COLOURS)
    spare = iter(_SPARE)
    for server in servers:
        colours.setdefault(server, next(spare, "#333333"))
    columns = 2
    rows = (len(panels) + 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(14, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (scenario, key, title, log, scale) in zip(axes.flat, panels, strict=False):
        configs = list(summary[scenario])
        width = 0.8 / max(1, len(servers))
        for s_index, server in enumerate(servers):
            xs, ys = [], []
            for c_index, config in enumerate(configs):
                value = summary[scenario][config].get(server, {}).get(key)
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    xs.append(c_index + (s_index - (len(servers) - 1) / 2) * width)
                    ys.append(value * scale)
            bars = ax.bar(xs, ys, width, label=server, color=colours[server])
            if len(configs) <= 3:
                ax.bar_label(bars, fmt="%.4g", fontsize=7, padding=1)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(configs)))
        ax.set_xlim(-0.5, len(configs) - 0.5)
        ax.set_xticklabels(configs, fontsize=8, rotation=20 if len(configs) > 4 else 0)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(
        f"collab vs peers, run {meta['started']} (server on core 0, load generator on core 1; "
        "lower is better except saturation; a missing bar = no valid figure)",
        fontsize=10,
        y=0.995,
    )
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=len(servers),
        fontsize=9,
        bbox_to_anchor=(0.5, 0.975),
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.9 / (3.6 * rows)))
    fig.savefig(path, dpi=90)
    plt.close(fig)
