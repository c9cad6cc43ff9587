"""The suite's charts: one PNG per group, ``<date>-<group>.png`` next to the results (matplotlib, Agg).

A group whose results are missing (its step failed or did not run) gets no chart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
SUBTITLE = "one run, one PostgreSQL server"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.0f}" if v >= 10 else f"{v:.2f}"


def _bars(ax: Any, names: list[str], values: list[float | None], title: str, ylabel: str) -> None:
    xs = list(range(len(names)))
    ax.bar(xs, [v or 0 for v in values], color=[PALETTE[i % len(PALETTE)] for i in xs])
    ax.set_xticks(xs, names, rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    for x, v in zip(xs, values, strict=True):
        ax.annotate(_label(v), (x, v or 0), ha="center", va="bottom", fontsize=8)


def _peer_figures(raw: dict[str, Any], test: str, key: str) -> tuple[list[str], list[float | None]]:
    results = (raw.get("peers") or {}).get("results", {})
    names = [s for s, tests in results.items() if isinstance(tests.get(test), dict)]
    return names, [results[s][test].get(key) for s in names]


def drain(raw: dict[str, Any], ax: Any) -> bool:
    names, values = _peer_figures(raw, "drain", "jobs_per_s")
    cfg = (raw.get("peers") or {}).get("config", {})
    _bars(ax, names, values, f"drain {cfg.get('jobs', 0):,} no-op jobs, concurrency {cfg.get('drain_concurrency')}, "
          f"batch {cfg.get('batch_size')}", "jobs/s (higher is better)")
    return bool(names)


def io(raw: dict[str, Any], ax: Any) -> bool:
    names, values = _peer_figures(raw, "io", "pct_of_ideal")
    cfg = (raw.get("peers") or {}).get("config", {})
    _bars(ax, names, values, f"{cfg.get('io_jobs', 0):,} x sleep({cfg.get('io_sleep')}s) at concurrency "
          f"{cfg.get('io_concurrency')}", "% of the ideal rate (higher is better)")
    ax.axhline(100, color="grey", linestyle="--", linewidth=1)
    return bool(names)


def latency(raw: dict[str, Any], ax: Any) -> bool:
    names, p50 = _peer_figures(raw, "latency", "p50_ms")
    _, p99 = _peer_figures(raw, "latency", "p99_ms")
    xs = list(range(len(names)))
    ax.bar([x - 0.2 for x in xs], [v or 0 for v in p50], width=0.4, label="p50", color=PALETTE[0])
    ax.bar([x + 0.2 for x in xs], [v or 0 for v in p99], width=0.4, label="p99", color=PALETTE[1])
    ax.set_xticks(xs, names, rotation=20, ha="right", fontsize=8)
    cfg = (raw.get("peers") or {}).get("config", {})
    ax.set_title(f"wake latency of an idle worker, {cfg.get('latency_jobs')} jobs "
                 f"{(cfg.get('latency_interval') or 0) * 1000:g} ms apart", fontsize=10)
    ax.set_ylabel("ms, enqueue commit -> job start (lower is better)")
    ax.legend(fontsize=8)
    return bool(names)


def scaleout(raw: dict[str, Any], ax: Any) -> bool:
    scale = (raw.get("worker") or {}).get("scale_out")
    if not scale:
        return False
    keys = list(scale)
    xs = list(range(len(keys)))
    ax.bar([x - 0.2 for x in xs], [scale[k]["per_s"] for k in keys], width=0.4, label="automate-aio-worker",
           color=PALETTE[0])
    ax.bar([x + 0.2 for x in xs], [scale[k]["raw_per_s"] for k in keys], width=0.4,
           label="raw claim/complete loop", color=PALETTE[7])
    for x, k in zip(xs, keys, strict=True):
        for dx, key in ((-0.2, "per_s"), (0.2, "raw_per_s")):
            ax.annotate(_label(scale[k][key]), (x + dx, scale[k][key]), ha="center", va="bottom", fontsize=8)
    low = min(min(v["per_s"], v["raw_per_s"]) for v in scale.values())
    ax.set_ylim(bottom=low / 3)
    ax.set_xticks(xs, [f"{k} process{'es' if k != '1' else ''}" for k in keys])
    ax.set_yscale("log")
    ax.set_title("scale-out: the same events, concurrency and batch split between processes", fontsize=10)
    ax.set_ylabel("events/s (log scale)")
    ax.legend(fontsize=8)
    return True


def emit(raw: dict[str, Any], ax: Any) -> bool:
    summary = (raw.get("emit") or {}).get("summary_events_per_s")
    if not summary:
        return False
    clients = list(summary)
    modes = list(summary[clients[0]])
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        ax.bar([c + i * width - 0.4 + width / 2 for c in range(len(clients))],
               [summary[c][mode] for c in clients], width=width, label=mode, color=PALETTE[i % len(PALETTE)])
    ax.set_xticks(list(range(len(clients))), [f"{c} emitter{'s' if c != '1' else ''}" for c in clients])
    ax.set_title("emit_event() and plain INSERT transactions (one event per transaction)", fontsize=10)
    ax.set_ylabel("events/s (higher is better)")
    ax.legend(fontsize=8)
    return True


def pgbench(raw: dict[str, Any], ax: Any) -> bool:
    clients = (raw.get("pgbench") or {}).get("clients")
    if not clients:
        return False
    _bars(ax, [f"{c} client{'s' if c != '1' else ''}" for c in clients], [v["tps"] for v in clients.values()],
          "pgbench: single-row INSERT transactions (the floor)", "transactions/s")
    return True


def memory(raw: dict[str, Any], ax: Any) -> bool:
    w = raw.get("worker") or {}
    drawn = False
    for key, label, color in (("soak", "soak", PALETTE[0]), ("in_flight", "runs in flight", PALETTE[1])):
        part = w.get(key) or {}
        if part.get("rss_mb"):
            n = part.get("events") or part.get("runs")
            ax.plot(part["rss_t"], part["rss_mb"], label=f"{label} ({n:,})", color=color, marker=".")
            drawn = True
    if drawn:
        ax.axhline(250, color="grey", linestyle="--", linewidth=1)
        ax.annotate("250 MB target", (0, 250), va="bottom", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.set_title("worker RSS over time", fontsize=10)
        ax.set_xlabel("seconds since the worker started")
        ax.set_ylabel("MB")
        ax.legend(fontsize=8)
    return drawn


def tracing(raw: dict[str, Any], ax: Any) -> bool:
    obs = (raw.get("worker_observability") or {}).get("observability")
    if not obs:
        return False
    names = list(obs["per_s"])
    values = [sorted(v)[len(v) // 2] if v else None for v in obs["per_s"].values()]
    _bars(ax, names, values, f"no-op drain, {obs['events']:,} events, tracing off / OTLP export on",
          "events/s (median of rounds)")
    return True


def cpu(raw: dict[str, Any], ax: Any) -> bool:
    rules = (raw.get("rules") or {}).get("rules")
    if not rules:
        return False
    names = [n for n, r in rules.items() if r.get("ratio_vs_fastest_peer")]
    _bars(ax, names, [rules[n]["ratio_vs_fastest_peer"] for n in names],
          "JSONLogic: automate / fastest peer package, per rule", "x fastest peer (higher is better)")
    ax.axhline(1, color="grey", linestyle="--", linewidth=1)
    return bool(names)


GROUPS: dict[str, Callable[[dict[str, Any], Any], bool]] = {
    "drain": drain, "io": io, "latency": latency, "scaleout": scaleout, "emit": emit, "pgbench": pgbench,
    "memory": memory, "tracing": tracing, "cpu": cpu,
}


def render(raw: dict[str, Any], built: dict[str, Any], out: Path, date: str) -> list[Path]:
    """Draw every group that has results; return the files written."""
    try:
        plt = _plt()
    except ImportError:  # the bench extra is not installed: the report still gets written
        return []
    written = []
    for group, draw in GROUPS.items():
        fig, ax = plt.subplots(figsize=(8, 4.6))
        try:
            if draw(raw, ax):
                fig.suptitle(f"{group} ({SUBTITLE}, {built['suite'].get('mode')} run {date})", fontsize=9)
                fig.tight_layout()
                path = out / f"{date}-{group}.png"
                fig.savefig(path, dpi=90)
                written.append(path)
        finally:
            plt.close(fig)
    return written
