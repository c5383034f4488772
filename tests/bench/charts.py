"""Charts of a gateway-bench run: latency against offered load, memory against connections.

Usage: python tests/bench/charts.py <results.json> <output dir>
Writes latency.png and memory.png into the output directory.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"gateway": "#d9480f", "node": "#1c7ed6"}
LABELS = {"gateway": "gateway", "node": "Node.js (socket.io + redis-adapter)"}


def latency_chart(results, out):
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    plotted = False
    for run in results["fanout"]:
        # The ramp (rising load); the fixed step only when there is no ramp.
        steps = run.get("ramp") or ([run["fixed"]] if run.get("fixed") else [])
        # A rate measured twice (the first attempt missed on latency): plot the second.
        by_load = {}
        for s in steps:
            by_load[s["offered_deliveries_per_sec"]] = s
        steps = [s for s in by_load.values() if s.get("p99_ms") is not None]
        if not steps:
            continue
        steps.sort(key=lambda s: s["offered_deliveries_per_sec"])
        x = [s["offered_deliveries_per_sec"] for s in steps]
        style = "-" if run["topology"] == "cluster" else "--"
        name = f'{LABELS[run["stack"]]}, {"3 nodes + Redis" if run["topology"] == "cluster" else "1 node"}'
        color = COLORS[run["stack"]]
        ax.plot(x, [s["p99_ms"] for s in steps], style, marker="o", color=color, label=f"{name}: p99")
        ax.plot(x, [s["p50_ms"] for s in steps], style, marker=".", color=color, alpha=0.45, label=f"{name}: p50")
        lost = [(s["offered_deliveries_per_sec"], s["p99_ms"]) for s in steps if s["lost"] > 0 or s["disconnects"] > 0]
        if lost:
            ax.scatter(*zip(*lost), marker="x", s=90, color="black", zorder=5)
        plotted = True
    ax.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    ax.text(ax.get_xlim()[0], 105, " 100 ms", color="grey", fontsize=8)
    ax.set_xlabel("offered deliveries per second")
    ax.set_ylabel("publish-to-receive latency, ms (log)")
    ax.set_yscale("log")
    mode = results["config"]["mode"]
    ax.set_title(f'Fan-out latency against offered load ({mode} mode, {results["config"]["fanout_clients"]} clients; x = losses)')
    if plotted:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no fan-out measured", transform=ax.transAxes, ha="center")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "latency.png")
    plt.close(fig)


def memory_chart(results, out):
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for run in results["idle"]:
        points = [(0, run["baseline_kib"])] + [tuple(p) for p in run["points"]]
        if len(points) < 2:
            continue
        ax.plot(
            [p[0] for p in points],
            [p[1] / 1024 for p in points],
            marker="o",
            color=COLORS[run["stack"]],
            label=LABELS[run["stack"]],
        )
    ax.set_xlabel("idle connections on one node")
    ax.set_ylabel("RSS, MiB")
    ax.set_title(f'Memory against connections ({results["config"]["mode"]} mode)')
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "memory.png")
    plt.close(fig)


def main():
    results = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    latency_chart(results, out)
    memory_chart(results, out)
    print(f"wrote {out / 'latency.png'} and {out / 'memory.png'}")


if __name__ == "__main__":
    main()
