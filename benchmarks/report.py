"""The suite's report: one row per figure, with its ratio to the best peer and to the raw loop, its target
and whether this run met it, all computed from the results of the same run (``build``), and the Markdown
file (``markdown``).

"The raw loop" is bench_peers.py's ``raw`` system: a hand-written asyncio + psycopg SKIP LOCKED
claim/complete loop on automate's own outbox tables, run in the same tests (same jobs, concurrency and
batch) as every system. "The best peer" is the better of procrastinate and pgqueuer on that figure
(higher throughput, lower latency). Figures from other scripts (scale-out, soak, tracing) are divided by
the drain test's figures of the same run, named in the cell.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

PEERS = ("procrastinate", "pgqueuer", "pgqueuer-psycopg")
GROUP_ORDER = ("drain", "io", "latency", "scale-out", "memory", "emit", "pgbench", "tracing", "cpu")
FLAT_TOLERANCE = 0.10  # "flat" RSS: the last third's mean within 10% of the first third's


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _x(r: float | None, name: str) -> str:
    return "-" if r is None else f"{r:.2f}x {name}"


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "not met"


class Peers:
    """bench_peers.py's results: figures by system and test, the best peer and the raw loop."""

    def __init__(self, data: dict[str, Any] | None) -> None:
        self.data = data or {}
        self.results: dict[str, Any] = self.data.get("results", {})

    def get(self, system: str, test: str, key: str) -> float | None:
        value = self.results.get(system, {}).get(test)
        return _num(value.get(key)) if isinstance(value, dict) else None

    def best(self, test: str, key: str, *, lower: bool = False) -> tuple[str, float | None]:
        found = [(s, v) for s in PEERS if (v := self.get(s, test, key)) is not None]
        if not found:
            return "best peer", None
        return (min if lower else max)(found, key=lambda sv: sv[1])

    def row(self, group: str, measure: str, system: str, test: str, key: str, unit: str, *,
            lower: bool = False, target: str = "reported", goal: tuple[str, float] | None = None) -> dict[str, Any]:
        """A row for ``system``'s figure; ``goal`` = (baseline system, ratio) makes its target."""
        value = self.get(system, test, key)
        peer, peer_value = self.best(test, key, lower=lower)
        raw = self.get("raw", test, key)
        row = _row(group, measure, value, unit, _ratio(value, peer_value), peer, _ratio(value, raw), "raw loop")
        if goal is not None:
            base, want = goal
            measured = _ratio(value, self.get(base, test, key))
            ok = None if measured is None else measured <= want if lower else measured >= want
            sign = "<=" if lower else ">="
            row.update(target=f"{sign} {want:.2f}x {'raw loop' if base == 'raw' else base} "
                              f"({'-' if measured is None else f'{measured:.2f}x'})",
                       met=_met(ok), measured_ratio=measured)
        else:
            row.update(target=target, met="reported")
        return row


def _row(group: str, measure: str, value: float | None, unit: str, vs_peer: float | None, peer: str,
         vs_raw: float | None, raw: str, **extra: Any) -> dict[str, Any]:
    return {"group": group, "measure": measure, "value": _value(value, unit), "number": value,
            "x_best_peer": _x(vs_peer, peer), "x_raw_loop": _x(vs_raw, raw), "ratio_best_peer": vs_peer,
            "ratio_raw_loop": vs_raw, "target": "reported", "met": "reported", **extra}


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.1f}%"
    if unit in ("MB", "tps") or value >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.2f} {unit}".strip()


def _failed(group: str, measure: str, why: str) -> dict[str, Any]:
    return {**_row(group, measure, None, "", None, "", None, ""), "value": why, "met": "n/a"}


_steps: dict[str, Any] = {}


def _why(step: str) -> str:
    """Why a step's figures are missing, from the run's facts."""
    s = _steps.get(step)
    if s is None:
        return "not run"
    if s.get("status") == "skipped":
        return f"skipped: {s.get('why')}"
    return f"not measured: the {step} step {s.get('status')} ({s.get('why') or '?'})"


def build(raw: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Every row of the report from the scripts' results (``raw``: result name -> its JSON)."""
    _steps.clear()
    _steps.update(facts.get("steps", {}))
    peers = Peers(raw.get("peers"))
    rows: list[dict[str, Any]] = []
    rows += _drain_rows(peers)
    rows += _worker_rows(raw, peers)
    rows += _emit_rows(raw)
    rows += _other_rows(raw, peers)
    order = {g: i for i, g in enumerate(GROUP_ORDER)}
    rows.sort(key=lambda r: order.get(r["group"], len(order)))  # stable: each group keeps its own order
    systems = {name: info.get("settings") or info.get("notes", "")
               for name, info in peers.data.get("systems", {}).items()}
    return {"suite": facts, "rows": rows, "systems": systems, "peers_config": peers.data.get("config", {}),
            "versions": peers.data.get("versions", {}), "definitions": __doc__}


def _drain_rows(p: Peers) -> list[dict[str, Any]]:
    if not p.results:
        return [_failed("drain", "drain, io and latency of every system (bench_peers.py)", _why("peers"))]
    full = "full-record event drain (event -> matched 1-step run, run + step rows final, job completed)"
    rows = [
        p.row("drain", full, "automate", "drain", "jobs_per_s", "events/s", goal=("pgqueuer", 1.0)),
        p.row("drain", full, "automate", "drain", "jobs_per_s", "events/s", goal=("raw", 0.40)),
        p.row("drain", "bare Django tasks, sync @task (AutomateTaskBackend rows)", "automate-tasks", "drain",
              "jobs_per_s", "tasks/s", goal=("pgqueuer", 1.5)),
        p.row("drain", "bare Django tasks, async @task (AutomateTaskBackend rows)", "automate-atasks", "drain",
              "jobs_per_s", "tasks/s", goal=("pgqueuer", 1.5)),
    ]
    uv = p.row("drain", "full-record event drain, --loop uvloop", "automate-uvloop", "drain", "jobs_per_s",
               "events/s")
    loop_ratio = _ratio(p.get("automate-uvloop", "drain", "jobs_per_s"), p.get("automate", "drain", "jobs_per_s"))
    uv["target"] = f"reported: {_x(loop_ratio, '--loop asyncio')}"
    rows.append(uv)
    io = p.row("io", "I/O-bound 5,000 x 50 ms at concurrency 100, % of ideal", "automate", "io", "pct_of_ideal", "%",
               goal=("raw", 1.0))
    jobs = p.get("automate", "io", "jobs")
    if jobs is not None and jobs != 5000:
        io["measure"] = io["measure"].replace("5,000", f"{jobs:,.0f}")
    rows.append(io)
    rows.append(p.row("latency", "wake latency, idle worker, p50 (commit -> step start)", "automate", "latency",
                      "p50_ms", "ms", lower=True, goal=("raw", 1.1)))
    rows.append(p.row("latency", "wake latency, idle worker, p99", "automate", "latency", "p99_ms", "ms",
                      lower=True, goal=("raw", 1.0)))
    return rows


def _worker_rows(raw: dict[str, Any], p: Peers) -> list[dict[str, Any]]:
    w = raw.get("worker")
    if not w:
        return [_failed("scale-out", "scale-out, memory, soak (bench_worker.py)", _why("worker"))]
    rows = []
    peer, peer_drain = p.best("drain", "jobs_per_s")
    raw_drain = p.get("raw", "drain", "jobs_per_s")
    if scale := w.get("scale_out"):
        per = [_num(scale[k]["per_s"]) for k in ("1", "2", "4")]
        vs_raw = [_num(scale[k]["vs_raw"]) for k in ("1", "2", "4")]
        ok = all(a is not None and b is not None and b >= a for a, b in itertools.pairwise(per))
        row = _row("scale-out", "1 -> 2 -> 4 worker processes, events/s (concurrency and batch split)", None, "",
                   None, peer, None, "raw loop")
        row.update(value=" -> ".join("-" if v is None else f"{v:,.0f}" for v in per),
                   x_best_peer=" / ".join(_x(_ratio(v, peer_drain), "").strip() for v in per)
                   + f" {peer} (1 process)",
                   x_raw_loop=" / ".join("-" if v is None else f"{v:.2f}x" for v in vs_raw)
                   + " raw loop (as many processes)",
                   target="never falls as workers are added", met=_met(ok), numbers=per)
        rows.append(row)
    if inflight := w.get("in_flight"):
        rss = _num(inflight.get("peak_rss_mb"))
        row = _row("memory", f"RSS with {inflight['runs']:,} runs in flight (peak; {inflight['peak_claimed']:,} "
                   "claimed at once)", rss, "MB", None, "", None, "")
        row.update(x_best_peer="- (no peer measures it)", x_raw_loop="-", target="< 250 MB",
                   met=_met(None if rss is None else rss < 250))
        rows.append(row)
    if soak := w.get("soak"):
        first, last = _num(soak.get("rss_first_third_mean_mb")), _num(soak.get("rss_last_third_mean_mb"))
        flat = None if not first or last is None else last <= first * (1 + FLAT_TOLERANCE)
        row = _row("memory", f"{soak['events']:,}-event soak: RSS first / peak / last", None, "", None, "", None, "")
        row.update(value="{} / {} / {} MB".format(*(f"{_num(soak.get(k)) or 0:.0f}" for k in
                                                   ("rss_first_mb", "rss_peak_mb", "rss_last_mb"))),
                   x_best_peer="- (no peer measures it)", x_raw_loop="-",
                   target=f"flat (last third's mean within {FLAT_TOLERANCE:.0%} of the first third's)", met=_met(flat))
        rows.append(row)
        rate = _num(soak.get("per_s"))
        rows.append(_row("drain", f"{soak['events']:,}-event soak, one worker", rate, "events/s",
                         _ratio(rate, peer_drain), f"{peer} drain", _ratio(rate, raw_drain), "raw loop drain"))
    if rp := w.get("record_path"):
        rate = _num(rp.get("best_automate_per_s"))
        row = _row("drain", f"record path, one worker, {rp['events']:,} events (bench_worker.py)", rate, "events/s",
                   _ratio(rate, peer_drain), f"{peer} drain", _num(rp.get("median_vs_raw")),
                   "sync raw loop on the outbox")
        row["target"] = f"reported: {_x(_num(rp.get('median_vs_ceiling')), 'record-path ceiling loop')}"
        rows.append(row)
    return rows


def _emit_rows(raw: dict[str, Any]) -> list[dict[str, Any]]:
    e = raw.get("emit")
    if not e:
        return [_failed("emit", "emit_event() (bench_emit.py)", _why("emit"))]
    rows = []
    pg = (raw.get("pgbench") or {}).get("clients", {})
    for clients, goal in (("16", 0.80), ("1", 0.60)):
        if clients not in e.get("summary_events_per_s", {}):
            continue
        rate = _num(e["summary_events_per_s"][clients].get("automate"))
        measured = _num(e["ratios"][clients].get("automate_vs_plain"))
        row = _row("emit", f"{clients} emitter{'s' if clients != '1' else ''}: emit_event() / plain INSERT "
                   "transactions (bench_emit.py)", rate, "events/s", None, "", measured, "plain INSERT")
        floor = _ratio(rate, _num(pg.get(clients, {}).get("tps")))
        row.update(x_best_peer="- (no peer enqueue measured)" + (f"; {floor:.2f}x pgbench" if floor else ""),
                   target=f">= {goal:.0%} of plain ({'-' if measured is None else f'{measured:.0%}'})",
                   met=_met(None if measured is None else measured >= goal), measured_ratio=measured)
        rows.append(row)
    return rows


def _other_rows(raw: dict[str, Any], p: Peers) -> list[dict[str, Any]]:
    rows = []
    pg = raw.get("pgbench")
    if pg and pg.get("available"):
        for clients, v in pg.get("clients", {}).items():
            row = _row("pgbench", f"pgbench single-row INSERT, {clients} client{'s' if clients != '1' else ''} "
                       "(the physical floor)", _num(v.get("tps")), "tps", None, "", None, "")
            row.update(x_best_peer="-", x_raw_loop="-", target="reported, no target")
            rows.append(row)
    elif pg is not None:
        rows.append(_failed("pgbench", "pgbench single-row INSERT", "not measured: pgbench is not on PATH"))
    elif "pgbench" in _steps:
        rows.append(_failed("pgbench", "pgbench single-row INSERT", _why("pgbench")))
    peer, peer_drain = p.best("drain", "jobs_per_s")
    raw_drain = p.get("raw", "drain", "jobs_per_s")
    if obs := (raw.get("worker_observability") or {}).get("observability"):
        on = _median(obs["per_s"].get("otlp", []))
        off = _median(obs["per_s"].get("off", []))
        ratio = _num(obs.get("median_ratio_to_off", {}).get("otlp"))
        row = _row("tracing", f"no-op drain with OTLP export on ({obs['events']:,} events x {obs['rounds']} rounds)",
                   on, "events/s", _ratio(on, peer_drain), f"{peer} drain", _ratio(on, raw_drain), "raw loop drain")
        row["target"] = f"reported: {_x(ratio, 'OTLP off')} (off: {off or 0:,.0f} events/s)"
        rows.append(row)
    if tasks := (raw.get("tasks") or {}).get("median"):
        events = _num(tasks.get("events_per_s"))
        for key, label in (("sync_tasks_per_s", "sync"), ("async_tasks_per_s", "async")):
            rate = _num(tasks.get(key))
            row = _row("drain", f"Django tasks, {label}, next to the event drain (bench_tasks.py)", rate, "tasks/s",
                       _ratio(rate, peer_drain), f"{peer} drain", _ratio(rate, raw_drain), "raw loop drain")
            row["target"] = f"reported: {_x(_ratio(rate, events), 'event drain')}"
            rows.append(row)
    if rules := raw.get("rules"):
        gm = _num(rules.get("geometric_mean_ratio_vs_fastest_peer"))
        row = _row("cpu", "JSONLogic evaluations/s, geometric mean over the rules (bench_rules.py)", None, "",
                   gm, "fastest JSONLogic package", None, "")
        row.update(value=f"lowest {_num(rules.get('min_ratio_vs_fastest_peer')) or 0:.2f}x",
                   x_raw_loop="-", target="reported")
        rows.append(row)
    if red := (raw.get("redaction") or {}).get("results"):
        warm = next((v for k, v in red.items() if k.startswith("run scope") and k.endswith("warm")), None)
        if warm:
            x = _num(warm.get("x_deepcopy"))
            row = _row("cpu", "redact() a ~100 KB payload, run scope, warm (bench_redaction.py)",
                       _num(warm.get("mb_per_s_median")), "MB/s", None, "", None if not x else 1 / x,
                       "copy.deepcopy (speed)")
            row.update(x_best_peer="-", target="reported")
            rows.append(row)
    return rows


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# --- Markdown ------------------------------------------------------------------------------------

COLUMNS = ("group", "measure", "value", "x_best_peer", "x_raw_loop", "target", "met")
HEADERS = ("group", "measure", "this run", "x best peer", "x raw loop", "target", "met?")


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_md(row.get(c, "")) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown(built: dict[str, Any]) -> str:
    f = built["suite"]
    server = f.get("server", {})
    before, after = f.get("commit_latency_before", {}), f.get("commit_latency_after", {})
    code = f"`{f.get('head', '?')[:12]}` ({_md(f.get('head_subject', ''))})"
    if f.get("dirty"):
        code += f", **with local changes** in {', '.join(f'`{d}`' for d in f['dirty'][:8])}"
    out = [
        f"# Benchmarks, {f.get('date')} ({f.get('mode')} run)",
        "",
        f"- code: {code}",
        f"- wall time: {f.get('wall_seconds', 0) / 60:.1f} min; steps: "
        + ", ".join(f"{name} {s.get('seconds', '-')}s ({s.get('status')})" for name, s in f.get("steps", {}).items()),
        f"- one private PostgreSQL {server.get('version', '?')} for every script (fsync={server.get('fsync')}, "
        f"synchronous_commit={server.get('synchronous_commit')}, shared_buffers={server.get('shared_buffers')}); "
        f"one-row commit p50 {before.get('p50_ms', '-')} ms before, {after.get('p50_ms', '-')} ms after",
        f"- machine: {f.get('machine', {}).get('cpus')} CPUs, load {f.get('machine', {}).get('load_avg_1m')} "
        f"at the end, Python {f.get('machine', {}).get('python')}",
        f"- every system claims in batches of {f.get('batch_size')} where it has a batch; the drains run at "
        f"concurrency {2 * int(f.get('batch_size') or 0)}",
        "",
        "Every ratio divides two figures of this run. \"x best peer\": against the better of procrastinate and "
        "pgqueuer on that figure; \"x raw loop\": against bench_peers.py's raw SKIP LOCKED loop on automate's "
        "outbox (same test, same jobs, concurrency and batch), unless the cell names another baseline. "
        "Absolute numbers move a lot between runs on a small shared machine; the ratios are what to compare.",
        "",
        markdown_table(built["rows"]),
        "## Systems and their settings",
        "",
        "| system | settings |",
        "|---|---|",
        *[f"| {_md(name)} | {_md(settings)} |" for name, settings in built.get("systems", {}).items()],
        "",
    ]
    if built.get("charts"):
        out += ["## Charts", "", *[f"![{c}]({c})" for c in built["charts"]], ""]
    if built.get("profile"):
        out += [f"Worker profile (pyinstrument, one more full-record drain, not timed): [{built['profile']}]"
                f"({built['profile']})", ""]
    failed = {n: s for n, s in f.get("steps", {}).items() if s.get("status") == "failed"}
    if failed:
        out += ["## Failed steps", ""]
        for name, s in failed.items():
            out += [f"### {name}: {s.get('why')}", "", "```", s.get("log_tail", "")[-2000:], "```", ""]
    return "\n".join(out)
