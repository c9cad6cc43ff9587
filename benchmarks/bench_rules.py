"""Evaluations per second of automate's JSONLogic engine against the PyPI peers ``json-logic`` and
``json-logic-qubit``, on the same rules and the same event payloads.

    python benchmarks/bench_rules.py [--seconds 2] [--rounds 7]

Both peers install a top-level ``json_logic`` package, so each engine runs in its own subprocess, and
each peer is installed (``pip install --target``) into its own folder under
``benchmarks/.peers-cache`` (inside the repository, ignored by git). Every engine's outputs are checked
against automate's before its speed counts: a rule a peer cannot run, or answers differently, is
reported and left out of the ratios. Prints a table; writes ``benchmarks/results/rules.json``.

Timing: each (engine, rule) runs in rounds of about ``seconds / rounds`` of CPU time, and every engine
runs ``passes`` times (in alternating order). Evaluations per second are per second of the process's
CPU time (``time.process_time``), so other processes competing for the CPUs distort them less than
wall time; the best round of the best pass is reported, with that pass's median round and its best
wall-clock rate alongside.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEERS = {"json-logic": "0.6.3", "json-logic-qubit": "0.9.1"}
# Inside the repository (nothing here reads a path outside it); the folder ignores itself (.gitignore).
CACHE = ROOT / "benchmarks" / ".peers-cache"

# -- workloads ----------------------------------------------------------------------------------------

ORDER_ROUTING = {
    "and": [
        {"==": [{"var": "type"}, "order.created"]},
        {">=": [{"var": "payload.total"}, 100]},
        {"in": [{"var": "payload.country"}, ["US", "CA", "GB", "DE", "FR"]]},
        {
            "or": [
                {"==": [{"var": "payload.customer.tier"}, "gold"]},
                {">": [{"var": "payload.items"}, 3]},
                {"!": [{"var": "payload.customer.new"}]},
            ]
        },
        {"<": [{"var": "payload.risk"}, 0.7]},
    ]
}

LINE_ITEMS = {
    "and": [
        {
            ">": [
                {
                    "reduce": [
                        {"filter": [{"var": "payload.lines"}, {">": [{"var": "qty"}, 0]}]},
                        {"+": [{"var": "accumulator"}, {"*": [{"var": "current.qty"}, {"var": "current.price"}]}]},
                        0,
                    ]
                },
                250,
            ]
        },
        {"some": [{"var": "payload.lines"}, {"in": [{"var": "sku"}, ["SKU-1", "SKU-7", "SKU-9"]]}]},
        {"all": [{"var": "payload.lines"}, {"<=": [{"var": "qty"}, 10]}]},
    ]
}

TIERS = {
    "if": [
        {"missing": ["payload.email", "payload.country"]},
        "incomplete",
        {">=": [{"var": "payload.total"}, 1000]},
        {"cat": ["vip-", {"var": "payload.country"}]},
        {">=": [{"var": "payload.total"}, 100]},
        "standard",
        "small",
    ]
}


def _big_nested() -> dict[str, Any]:
    """An ``or`` of 24 five-condition ``and`` clauses over 30 fields: about 670 nodes."""
    clauses = []
    for c in range(24):
        conditions: list[Any] = []
        for k in range(5):
            field = {"var": f"payload.f{(c * 5 + k) % 30}"}
            kind = (c + k) % 5
            if kind == 0:
                conditions.append({">=": [field, (c * 7 + k) % 50]})
            elif kind == 1:
                conditions.append({"<": [field, 40 + (c % 10)]})
            elif kind == 2:
                conditions.append({"==": [field, (c + k) % 3]})
            elif kind == 3:
                conditions.append({"in": [field, [1, 2, 3, 5, 8, 13]]})
            else:
                conditions.append({"!": [{"==": [field, 0]}]})
        clauses.append({"and": conditions})
    return {"or": clauses}


BIG_NESTED = _big_nested()


def _events() -> list[dict[str, Any]]:
    events = []
    countries = ["US", "FR", "JP", "CA", "GB", "BR", "DE", "US"]
    for i in range(8):
        lines = [
            {"sku": f"SKU-{(i * 3 + j) % 11}", "qty": (i + j) % 12, "price": 5 + (i * 7 + j * 13) % 90}
            for j in range(4 + i)
        ]
        payload: dict[str, Any] = {
            "total": [50, 120, 300, 99, 2500, 101, 100, 999][i],
            "country": countries[i],
            "items": i % 6,
            "risk": [0.1, 0.5, 0.9, 0.2, 0.3, 0.69, 0.71, 0.0][i],
            "customer": {"tier": ["gold", "silver", "gold", "none", "silver", "gold", "none", "silver"][i]},
            "lines": lines,
        }
        if i % 3:
            payload["customer"]["new"] = i % 2 == 0
        if i != 5:
            payload["email"] = f"user{i}@example.com"
        for f in range(30):
            payload[f"f{f}"] = (i * 31 + f * 17) % 60
        events.append({"type": "order.created" if i != 3 else "order.paid", "payload": payload})
    return events


WORKLOADS: dict[str, tuple[Any, str]] = {
    "order_routing": (ORDER_ROUTING, "bool"),
    "line_items_map_filter_reduce": (LINE_ITEMS, "bool"),
    "tiered_if_cat_missing": (TIERS, "value"),
    "big_nested_or_of_ands": (BIG_NESTED, "bool"),
}

# -- workers (one process per engine) -----------------------------------------------------------------


def _truthy(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) > 0
    if isinstance(value, dict):
        return True
    if isinstance(value, float) and value != value:
        return False
    return bool(value)


def _load_engine(engine: str, path: str | None) -> tuple[Callable[[Any, Any], Any], str, str]:
    """``(fn(rule, data), version, note)`` for one engine, imported in this (worker) process."""
    if engine.startswith("automate"):
        sys.path.insert(0, str(ROOT))
        import automate
        from automate.rules import apply, get_compiled

        if engine == "automate":
            return (
                apply,
                automate.__version__,
                "public API: apply(rule, data), compiled-rule cache keyed by canonical JSON",
            )
        compiled: dict[int, Any] = {}

        def precompiled(rule: Any, data: Any) -> Any:
            fn = compiled.get(id(rule))
            if fn is None:
                fn = compiled[id(rule)] = get_compiled(rule)
            return fn(data)

        return precompiled, automate.__version__, "get_compiled(rule) once, then compiled(data)"
    assert path is not None
    sys.path.insert(0, path)
    version = PEERS[engine]
    try:
        from json_logic import jsonLogic

        jsonLogic({"==": [1, 1]})
        return jsonLogic, version, "unmodified"
    except Exception as exc:  # json-logic 0.6.3 is Python 2 code
        broken = f"{type(exc).__name__}: {exc}"
        if engine != "json-logic":
            raise
    source = (Path(path) / "json_logic" / "__init__.py").read_text()
    patched = "from functools import reduce\n" + source.replace("op = tests.keys()[0]", "op = next(iter(tests))")
    namespace: dict[str, Any] = {"__name__": "json_logic_py3_shim"}
    exec(compile(patched, "json_logic/__init__.py (py3 shim)", "exec"), namespace)
    note = (
        f"0.6.3 as published fails on Python 3 ({broken}); measured with a minimal shim: "
        "'from functools import reduce' added, 'tests.keys()[0]' -> 'next(iter(tests))'"
    )
    return namespace["jsonLogic"], version, note


def _time(fn: Callable[[Any, Any], Any], rule: Any, samples: list[Any], seconds: float, rounds: int) -> dict[str, Any]:
    def run(passes: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(passes):
            for data in samples:
                fn(rule, data)
        return time.process_time() - cpu, time.perf_counter() - wall

    passes, (elapsed, _) = 1, run(1)
    while elapsed < 0.02:
        passes *= 2
        elapsed, _ = run(passes)
    per_round = max(1, int(passes * (seconds / rounds) / elapsed))
    gc.collect()
    measured = [run(per_round) for _ in range(rounds)]
    cpu_times = [cpu for cpu, _ in measured]
    evals = per_round * len(samples)
    return {
        "evals_per_sec": evals / min(cpu_times),
        "median_evals_per_sec": evals / statistics.median(cpu_times),
        "wall_evals_per_sec": evals / min(wall for _, wall in measured),
        "evals_per_round": evals,
    }


def worker(engine: str, path: str | None, seconds: float, rounds: int) -> dict[str, Any]:
    fn, version, note = _load_engine(engine, path)
    samples = _events()
    out: dict[str, Any] = {"engine": engine, "version": version, "note": note, "rules": {}}
    for name, (rule, kind) in WORKLOADS.items():
        try:
            results = [fn(rule, data) for data in samples]
        except Exception as exc:
            out["rules"][name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:200]}
            continue
        shown = [_truthy(r) for r in results] if kind == "bool" else results
        out["rules"][name] = {"status": "ok", "results": json.loads(json.dumps(shown, default=str))}
        out["rules"][name].update(_time(fn, rule, samples, seconds, rounds))
    return out


# -- driver -------------------------------------------------------------------------------------------


def _install(dist: str, version: str) -> Path | None:
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    target = CACHE / f"{dist}-{version}"
    if (target / "json_logic" / "__init__.py").exists():
        return target
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), f"{dist}=={version}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"could not install {dist}=={version}: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return target


def _run_worker(engine: str, path: Path | None, seconds: float, rounds: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", engine, "--seconds", str(seconds), "--rounds", str(rounds)]
    if path is not None:
        command += ["--path", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=str(ROOT))
    if done.returncode != 0:
        return {"engine": engine, "error": done.stderr.strip()[-500:], "rules": {}}
    return json.loads(done.stdout)


def _nodes(rule: Any) -> int:
    sys.path.insert(0, str(ROOT))
    from automate.core.rules.validate import check

    return check(rule).nodes


def _best(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge several runs of one engine: per rule, the pass with the most evaluations per second."""
    merged = dict(passes[0])
    merged["rules"] = {}
    for name in WORKLOADS:
        entries = [run["rules"][name] for run in passes if name in run.get("rules", {})]
        timed = [e for e in entries if e.get("status") == "ok"]
        if timed:
            best = max(timed, key=lambda e: e["evals_per_sec"])
            merged["rules"][name] = {**best, "passes_evals_per_sec": [e["evals_per_sec"] for e in timed]}
        elif entries:
            merged["rules"][name] = entries[0]
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing budget per engine, rule and pass")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=3, help="run every engine this many times, keep the best")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.path, args.seconds, args.rounds)))
        return

    targets: dict[str, Path | None] = {"automate": None, "automate-precompiled": None}
    for dist, version in PEERS.items():
        targets[dist] = _install(dist, version)
    passes: dict[str, list[dict[str, Any]]] = {engine: [] for engine in targets}
    for number in range(args.passes):
        order = list(targets) if number % 2 == 0 else list(reversed(targets))  # spread out load bursts
        for engine in order:
            if engine in PEERS and targets[engine] is None:
                passes[engine].append({"engine": engine, "error": "not installed", "rules": {}})
                continue
            passes[engine].append(_run_worker(engine, targets[engine], args.seconds, args.rounds))
    runs = {engine: _best(runs) for engine, runs in passes.items()}

    reference = runs["automate"]["rules"]
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "seconds_per_measure": args.seconds,
        "rounds": args.rounds,
        "passes": args.passes,
        "engines": {name: {k: run.get(k) for k in ("version", "note", "error")} for name, run in runs.items()},
        "rules": {},
    }
    ratios: list[float] = []
    pre_ratios: list[float] = []
    for name, (rule, _) in WORKLOADS.items():
        row: dict[str, Any] = {"nodes": _nodes(rule), "engines": {}}
        expected = reference.get(name, {}).get("results")
        for engine, run in runs.items():
            result = run["rules"].get(name, {"status": "error", "error": run.get("error", "missing")})
            entry = {k: v for k, v in result.items() if k != "results"}
            if result.get("status") == "ok" and result.get("results") != expected:
                entry["status"] = "mismatch"
                entry["got"], entry["expected"] = result.get("results"), expected
            row["engines"][engine] = entry
        peers = {e: row["engines"][e] for e in PEERS if row["engines"][e].get("status") == "ok"}
        ours = row["engines"]["automate"].get("evals_per_sec")
        if peers and ours:
            fastest = max(peers, key=lambda e: peers[e]["evals_per_sec"])
            row["fastest_peer"] = fastest
            row["ratio_vs_fastest_peer"] = ours / peers[fastest]["evals_per_sec"]
            pre = row["engines"]["automate-precompiled"].get("evals_per_sec")
            row["precompiled_ratio_vs_fastest_peer"] = pre / peers[fastest]["evals_per_sec"] if pre else None
            ratios.append(row["ratio_vs_fastest_peer"])
            if pre:
                pre_ratios.append(row["precompiled_ratio_vs_fastest_peer"])
        report["rules"][name] = row
    if ratios:
        report["geometric_mean_ratio_vs_fastest_peer"] = statistics.geometric_mean(ratios)
        report["min_ratio_vs_fastest_peer"] = min(ratios)
        report["precompiled_geometric_mean_ratio"] = statistics.geometric_mean(pre_ratios)
        report["precompiled_min_ratio"] = min(pre_ratios)

    _print(report, list(runs))
    import _common as common  # after the workers: they import only what they measure

    print(f"\nwrote {common.shown(common.write_results('rules', report))}")


def _print(report: dict[str, Any], engines: list[str]) -> None:
    print(
        f"Python {report['python']} on {report['platform']} ({report['cpu_count']} CPUs); "
        "evaluations per CPU-second, best round"
    )
    head = f"{'rule':<30}{'nodes':>6}" + "".join(f"{e:>22}" for e in engines) + "  vs faster peer (precompiled)"
    print(head)
    print("-" * len(head))
    for name, row in report["rules"].items():
        cells = []
        for engine in engines:
            entry = row["engines"][engine]
            cells.append(
                f"{entry['evals_per_sec']:>22,.0f}" if entry.get("status") == "ok" else f"{entry['status']:>22}"
            )
        ratio, pre = row.get("ratio_vs_fastest_peer"), row.get("precompiled_ratio_vs_fastest_peer")
        shown = f"{ratio:.1f}x ({pre:.1f}x) vs {row['fastest_peer']}" if ratio and pre else "n/a"
        print(f"{name:<30}{row['nodes']:>6}" + "".join(cells) + f"  {shown}")
    if "geometric_mean_ratio_vs_fastest_peer" in report:
        print(
            "\nautomate (apply) vs the faster peer: geometric mean "
            f"{report['geometric_mean_ratio_vs_fastest_peer']:.1f}x, "
            f"lowest {report['min_ratio_vs_fastest_peer']:.1f}x; "
            f"precompiled: geometric mean {report['precompiled_geometric_mean_ratio']:.1f}x, "
            f"lowest {report['precompiled_min_ratio']:.1f}x"
        )
    for engine, info in report["engines"].items():
        if info.get("note") and info["note"] != "unmodified":
            print(f"note [{engine}]: {info['note']}")
        if info.get("error"):
            print(f"error [{engine}]: {info['error']}")
    for name, row in report["rules"].items():
        for engine, entry in row["engines"].items():
            if entry.get("status") in ("error", "mismatch"):
                print(f"{name} / {engine}: {entry['status']} {entry.get('error', '')}")


if __name__ == "__main__":
    main()
