"""The benchmark's output: one plain-text table per sub-benchmark, and the JSON file.

Results are plain dicts (what the JSON holds); rendering reads them and never fails on
a missing figure: it prints "-" and, for a skipped or failed sub-benchmark, why.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._stats import ratio

RESULTS = Path(__file__).resolve().parent / "results"


def seconds(value: Any, digits: int = 2) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.{digits}f} s"


def millis(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value * 1000:.0f} ms"


def times(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.2f}x"


def verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "missed")


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) if i < len(row) else 0 for row in rows)
              for i in range(max(len(row) for row in rows))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                          strict=False)).rstrip()
                     for row in rows)


def median_of(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def short(error: str, width: int = 160) -> str:
    """An error's first line, and its last when there are more (where the cause usually is)."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()] or [""]
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text if len(text) <= width else text[:width] + " ..."


def _down(result: Mapping[str, Any]) -> str:
    code = result.get("down_exit_code")
    return seconds(result.get("down_s")) + (f" (exit {code})" if code else "")


def _heading(text: str) -> str:
    return f"== {text} =="


def _failed(name: str, result: Mapping[str, Any]) -> str | None:
    if "error" in result:
        return f"{_heading(name)}\nnot measured: {result['error']}"
    return None


def render_startup(result: Mapping[str, Any]) -> str:
    failed = _failed("startup", result)
    if failed:
        return failed
    value = result.get("median_s")
    samples = ", ".join(f"{x:.2f}" for x in result.get("samples_s", []))
    met = verdict(value < 0.5) if isinstance(value, float) else ""
    return "\n".join([_heading("startup"), table([
        ("python -m ollamatopo --help", f"median {seconds(value)}", f"of {samples}",
         f"target < 0.5 s: {met}")])])


def render_seed(result: Mapping[str, Any]) -> str:
    failed = _failed("seed topology under ollamatopo", result)
    if failed:
        return failed
    rows: list[tuple[str, ...]] = [("service", "delay", "stand-in ready", "poller 200",
                                    "healthy event", "detection", "probes")]
    for name, service in result["services"].items():
        rows.append((name, seconds(service["delay_s"], 1), seconds(service["standin_ready_s"]),
                     seconds(service["ready_s"]), seconds(service["healthy_s"]),
                     millis(service["detection_s"]), str(service["probe_attempts"])))
    bound = result["bound"]
    ready, over = result.get("all_ready_s"), result.get("over_bound_s")
    detection, probes = result["detection"], result["probes_per_service"]
    milestones = result.get("milestones") or {}
    samples = result["latency_samples"]
    latency = ", ".join(f"{x['ready_s']:.2f}" for x in samples)
    created = median_of([x["created_s"] for x in samples])
    started = median_of([x["started_s"] for x in samples])
    worst = detection.get("worst")
    summary = [
        ("all ready (poller, from launching up)", seconds(ready), ""),
        ("up exited", seconds(result.get("up_exit_s")),
         f"cpu {seconds(result.get('up_cpu_s'))}, "
         f"peak RSS {result.get('up_max_rss_mb', 0):.0f} MB"),
        ("ollamatopo: run started / first create / first start",
         " / ".join(seconds(milestones.get(key)) for key in
                    ("run_started_s", "first_created_s", "first_started_s")),
         "after launching up (interpreter, imports, plan, engine snapshot)"),
        ("lone stand-in create-to-ready", seconds(bound["latency_s"]),
         f"median of {latency} (created at {seconds(created)}, started at {seconds(started)})"),
        ("graph bound (critical path)", seconds(bound["critical_s"]),
         " -> ".join(bound["critical_path"])),
        ("phase bound (phases as barriers)", seconds(bound["phase_s"]),
         f"the graph saves {seconds(bound['saved_s'])}"),
        ("actual / graph bound", times(result.get("ratio_to_bound")),
         f"{'+' if isinstance(over, float) and over >= 0 else ''}{seconds(over)}; target "
         f"within +0.5 s: {verdict(over <= 0.5) if isinstance(over, float) else '-'}"),
        ("detection latency (stand-in ready -> healthy)",
         f"median {millis(detection.get('median'))}",
         f"worst {millis(worst)} ({detection.get('worst_item')}); targets 100/300 ms: "
         + (verdict(detection['median'] <= 0.1 and worst <= 0.3)
            if isinstance(worst, float) else "-")),
        ("probes per service", f"median {probes['median']}",
         f"max {probes['max']}, total {probes['total']}"),
        ("down --volumes", _down(result), ""),
    ]
    replay = result.get("replay")
    if isinstance(replay, Mapping):
        over_replay = replay.get("over_bound_s")
        summary.append((
            "engine floor: the benchmark drives the graph itself", seconds(
                replay.get("all_ready_s")),
            f"+{seconds(over_replay)} over the bound (SDK calls, no interpreter start, "
            "every step as early as the graph allows)"))
    summary += _repeats(result.get("repeats") or [])
    warm = result.get("warm")
    if isinstance(warm, Mapping) and "all_ready_s" in warm:
        warm_over = warm.get("over_bound_s")
        summary += [
            ("warm run (history of the cold run): all ready", seconds(warm["all_ready_s"]),
             f"{times(warm.get('ratio_to_bound'))} of the bound, "
             f"{'+' if isinstance(warm_over, float) and warm_over >= 0 else ''}"
             f"{seconds(warm_over)}; target within +0.5 s: "
             + (verdict(warm_over <= 0.5) if isinstance(warm_over, float) else "-")),
            ("warm run: detection latency",
             f"median {millis(warm['detection'].get('median'))}",
             f"worst {millis(warm['detection'].get('worst'))}; "
             f"probes median {warm['probes_per_service']['median']}"),
        ]
    return "\n".join([_heading("seed topology under ollamatopo (10 stand-ins, delays 1-4 s): "
                               "cold run"), table(rows), "", table(summary)])


def _repeats(repeats: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """One line per kind of run over all repeats: the median excess and the range."""
    if len(repeats) < 2:
        return []
    rows = []
    for kind in ("cold", "warm", "replay"):
        overs = [r[f"{kind}_over_bound_s"] for r in repeats
                 if isinstance(r.get(f"{kind}_over_bound_s"), int | float)]
        if overs:
            label = "engine floor" if kind == "replay" else f"{kind} runs"
            rows.append((f"{label} over the bound, {len(repeats)} repeats",
                         f"median +{seconds(median_of(overs))}",
                         "each: " + ", ".join(f"+{x:.2f}" for x in overs)
                         + "; bounds " + ", ".join(f"{r['bound_s']:.2f}" for r in repeats)))
    return rows


def render_compose(result: Mapping[str, Any], seed: Mapping[str, Any] | None) -> str:
    tool, v2 = result.get("tool") or {}, result.get("tool_v2") or {}
    name = f"docker-compose {tool.get('version') or ''} ({tool.get('note', '')})"
    if v2:
        name += (f" and {v2.get('version')} ({v2.get('note', '')})" if v2.get("path")
                 else f"; v2 not measured: {v2.get('note', '')}")
    failed = _failed(f"peers: {name}", result)
    if failed:
        return failed
    ours = (seed or {}).get("all_ready_s")
    warm = ((seed or {}).get("warm") or {})
    rows: list[tuple[str, ...]] = [("run", "all ready", "up exited", "ollamatopo faster by",
                                    "target", "warm run faster by")]
    rows.append(("ollamatopo (seed run, cold)", seconds(ours),
                 seconds((seed or {}).get("up_exit_s")), "", "", ""))
    rows.append(("ollamatopo (seed run, warm)", seconds(warm.get("all_ready_s")),
                 seconds(warm.get("up_exit_s")), "", "", ""))
    targets = {"seed": 2.5, "1s": 1.0}
    for key, run in result.get("runs", {}).items():
        variant = key.removeprefix("v2-")
        version = run.get("tool_version")
        label = f"compose{' ' + version if version else ''}, {run.get('description', variant)}"
        if "error" in run:
            rows.append((label, "not measured", short(run["error"]), "", "", ""))
            continue
        speedup = run.get("speedup")
        goal = targets.get(variant)
        rows.append((label, seconds(run.get("all_ready_s")), seconds(run.get("up_exit_s")),
                     times(speedup),
                     f"{'>=' if variant == 'seed' else '>'} {goal:g}x: "
                     + (verdict(speedup >= goal if variant == "seed" else speedup > goal)
                        if isinstance(speedup, float) and goal else "-"),
                     times(ratio(run.get("all_ready_s"), warm.get("all_ready_s")))))
    return "\n".join([_heading(f"peers: {name}"), table(rows), *_same_file(result)])


def _same_file(result: Mapping[str, Any]) -> list[str]:
    """The same compose file (the seed's healthchecks): compose v2 `up -d --wait` against
    `ollamatopo up -f` of it."""
    same = result.get("same_file")
    if not same:
        return []
    if "error" in same:
        return ["", f"same compose file: not measured: {short(same['error'])}"]
    theirs, ours = same["compose_wait"], same["ollamatopo"]
    rows: list[tuple[str, ...]] = [("same compose file, seed healthchecks", "up exited",
                                    "all ready", "faster by", "target >= 3.5x",
                                    "every run's exit")]
    rows.append((f"compose {same.get('compose_version')} up -d --wait",
                 seconds(theirs["up_exit_s"]), seconds(theirs["all_ready_s"]), "", "",
                 _exits(theirs)))
    for label in ("cold", "warm", "daemon"):
        if label not in ours:
            continue
        speedup = same.get(f"speedup_exit_{label}")
        rows.append((f"ollamatopo up -f (the same file, {label})",
                     seconds(ours[label]["up_exit_s"]), seconds(ours[label]["all_ready_s"]),
                     times(speedup),
                     verdict(speedup >= 3.5) if isinstance(speedup, float) else "-",
                     _exits(ours[label])))
    note = f"(the median of {same['repeat']} runs each)" if same.get("repeat", 1) > 1 else ""
    return ["", table(rows), *([note] if note else [])]


def _exits(run: Mapping[str, Any]) -> str:
    return " / ".join(f"{value:.2f}" for value in run.get("repeats") or ())


def render_scale(result: Mapping[str, Any]) -> str:
    failed = _failed("scale", result)
    if failed:
        return failed
    rows: list[tuple[str, ...]] = [("N", "engine ready", "ollamatopo ready", "up exited",
                                    "engine/ollamatopo", "cpu", "cpu/service", "peak RSS",
                                    "down", "engine remove")]
    for run in result.get("runs", []):
        if "error" in run:
            rows.append((str(run["n"]), "not measured: " + short(run["error"])))
            continue
        ours, engine = run["ollamatopo"], run["engine"]
        rows.append((str(run["n"]), seconds(engine["all_ready_s"]),
                     seconds(ours["all_ready_s"]), seconds(ours["up_exit_s"]),
                     f"{run['throughput_ratio']:.2f}" if run.get("throughput_ratio") else "-",
                     seconds(ours["cpu_s"]), f"{run['cpu_ms_per_service']:.0f} ms",
                     f"{ours['max_rss_mb']:.0f} MB", _down(ours),
                     seconds(engine["remove_s"])))
    fits = [("line in N (least squares)", "per service", "fixed", "worst residual")]
    for name, fit in (result.get("fits") or {}).items():
        if fit:
            fits.append((name.replace("_s", "").replace("_", " "), millis(fit["slope"]),
                         seconds(fit["intercept"]), seconds(fit["worst_residual"])))
    notes = ("targets: engine/ollamatopo >= 0.9 at N=100 and 200; peak RSS < 100 MB at "
             "N=200; cost of up linear in N")
    parts = [_heading(f"scale: one phase of N zero-delay stand-ins (engine: "
                      f"{result.get('threads')} SDK threads create+start)"), table(rows)]
    if len(fits) > 1:
        parts += ["", table(fits)]
    return "\n".join([*parts, notes])


def render(results: Mapping[str, Any]) -> str:
    machine = results.get("machine", {})
    parts = [_heading("machine") + "\n" + ", ".join(
        f"{key} {value}" for key, value in machine.items() if value is not None)]
    benchmarks = results.get("benchmarks", {})
    if "startup" in benchmarks:
        parts.append(render_startup(benchmarks["startup"]))
    if "seed" in benchmarks:
        parts.append(render_seed(benchmarks["seed"]))
    if "compose" in benchmarks:
        parts.append(render_compose(benchmarks["compose"], benchmarks.get("seed")))
    if "scale" in benchmarks:
        parts.append(render_scale(benchmarks["scale"]))
    if "daemon" in benchmarks:
        parts.append(render_daemon(benchmarks["daemon"], benchmarks.get("seed")))
    return "\n\n".join(parts)


def render_daemon(result: Mapping[str, Any], seed: Mapping[str, Any] | None) -> str:
    """The thin client through a resident daemon, beside the direct commands."""
    failed = _failed("daemon", result)
    if failed:
        return failed
    through = result.get("status_through_daemon_median_s")
    up = result.get("up_through_daemon") or {}
    bound = (up.get("bound") or {}).get("critical_s")
    over = up.get("over_bound_s")
    direct_up = (seed or {}).get("all_ready_s")
    rows = [
        ("status, through the daemon", f"median {millis(through)}",
         f"{result.get('services')} services",
         f"target < 100 ms: {verdict(through < 0.1) if isinstance(through, float) else ''}"),
        ("status, direct (probes each)", f"median {millis(result.get('status_direct_median_s'))}",
         "", ""),
        ("up of the seed through the idle daemon", f"all ready {seconds(up.get('all_ready_s'))}",
         f"bound {seconds(bound)}, over by {seconds(over)}",
         f"target bound + 0.5 s: {verdict(over <= 0.5) if isinstance(over, float) else ''}"),
        ("  the client's up exits", seconds(up.get("up_exit_s")), "", ""),
        ("up of the seed, direct (the seed run)", f"all ready {seconds(direct_up)}",
         "" if seed else "run `seed` in the same invocation", ""),
    ]
    return "\n".join([_heading("daemon"), table(rows)])


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def write_results(results: Mapping[str, Any], directory: Path = RESULTS,
                  stamp: str | None = None) -> Path:
    """`<directory>/<timestamp>.json`, and the same as `latest.json`; the timestamped path."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str) + "\n"
    path = directory / f"{stamp or timestamp()}.json"
    for target in (path, directory / "latest.json"):
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(target)
    return path
