"""The seed topology under ollamatopo: all-ready time, the bound, detection latency.

One run: measure a lone stand-in's create-to-ready latency (median of 3), write the
seed plan with stand-ins into a temporary folder, run `ollamatopo up` while the poller
watches every published /health (each from its container's start event on), then read
ollamatopo's `service healthy` events, its JSON report (probe attempts) and the
stand-ins' own readiness from the engine's log timestamps. `down --volumes` and a
sweep by label end it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from bench import _child
from bench._docker import BenchError, Engine, Latency, measure_latency
from bench._logs import event_times, first_time, json_events
from bench._plans import SEED_DELAYS, SeedTopology, load_seed, seed_plan
from bench._poller import ReadinessPoller
from bench._ports import free_ports, loopback_targets, seed_ports
from bench._replay import run_replay
from bench._stats import Bound, all_ready, compute_bound, differences, median, ratio, spread

READY_TIMEOUT_S = 120.0


def run_seed(engine: Engine, image: str, topology: SeedTopology | None = None,
             delays: Mapping[str, float] = SEED_DELAYS, repeat: int = 1) -> dict[str, Any]:
    """`repeat` times: a cold run (no history), then a warm one with the same plan and
    state directory, so ollamatopo knows each service's start-to-ready seconds from the
    cold run, as it does on a host that brings its topology up again; then the engine's
    floor (`_replay`). Each repeat starts
    from an empty state directory and measures its own bound. The cold run is the
    headline; the repeat whose cold run is the median one is reported in full, with
    every repeat's figures beside it (this machine's noise is a few tenths of a second)."""
    topology = topology or load_seed()
    rounds = [_one_round(engine, image, topology, delays) for _ in range(max(1, repeat))]
    ordered = sorted(rounds, key=lambda result: result.get("over_bound_s") or 0.0)
    chosen = ordered[(len(ordered) - 1) // 2]
    return {**chosen, "repeats": [_round_summary(result) for result in rounds]}


def _one_round(engine: Engine, image: str, topology: SeedTopology,
               delays: Mapping[str, float]) -> dict[str, Any]:
    samples = measure_latency(engine, image, free_ports(1)[0])
    latency = median(sample.ready_s for sample in samples) or 0.0
    bound = compute_bound(topology.dependencies(),
                          [members for _, members in topology.phases], delays, latency)
    project = f"bench-seed-{engine.session}"
    with tempfile.TemporaryDirectory(prefix="ollamatopo-bench-") as folder:
        root = Path(folder)
        cold = _one_seed_run(engine, image, topology, delays, root, project, "cold",
                             samples, bound)
        warm = _one_seed_run(engine, image, topology, delays, root, project, "warm",
                             samples, bound)
    replay = run_replay(engine, image, topology, delays)
    ready = replay.get("all_ready_s")
    replay["over_bound_s"] = None if ready is None else ready - bound.critical_s
    return {**cold, "warm": warm, "replay": replay}


def _round_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    warm = result.get("warm") or {}
    return {"bound_s": result["bound"]["critical_s"], "latency_s": result["bound"]["latency_s"],
            "cold_all_ready_s": result.get("all_ready_s"),
            "cold_over_bound_s": result.get("over_bound_s"),
            "warm_all_ready_s": warm.get("all_ready_s"),
            "warm_over_bound_s": warm.get("over_bound_s"),
            "replay_over_bound_s": (result.get("replay") or {}).get("over_bound_s")}


def _one_seed_run(engine: Engine, image: str, topology: SeedTopology,
                  delays: Mapping[str, float], root: Path, project: str, label: str,
                  samples: Sequence[Latency], bound: Bound) -> dict[str, Any]:
    ports = seed_ports(topology)
    plan_path = root / f"seed-{label}.yaml"
    plan = seed_plan(topology, project=project, image=image, ports=ports,
                     labels=engine.labels(), delays=delays)
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    report_path = root / f"report-{label}.json"
    env = _child.ollamatopo_env(root / "state")
    try:
        poller = ReadinessPoller(loopback_targets(ports), gated=True)
        with poller, engine.watch_starts(poller.open_gate):
            up = _child.run(_child.ollamatopo_argv(
                "up", "--plan", str(plan_path), "--log-format", "json",
                "--report", str(report_path)), env=env, timeout_s=READY_TIMEOUT_S + 60)
            poller.wait(0 if up.exit_code else READY_TIMEOUT_S)
        if up.exit_code != 0:
            raise BenchError(f"ollamatopo up ({label}) exited {up.exit_code}:\n{up.tail()}")
        actual = engine.ready_times()
        report = read_json(report_path)
        down = _child.run(_child.ollamatopo_argv("down", "--plan", str(plan_path),
                                                 "--volumes", "--log-format", "json"),
                          env=env, timeout_s=120)
    finally:
        engine.sweep()
    return seed_result(topology, delays, ports, poller.first_ready(), poller.probes(), up,
                       actual, report, down, samples, bound)


def seed_result(topology: SeedTopology, delays: Mapping[str, float], ports: Mapping[str, int],
                first_ready: Mapping[str, float | None], poller_probes: Mapping[str, int],
                up: _child.ChildRun, actual: Mapping[str, float], report: Mapping[str, Any],
                down: _child.ChildRun, samples: Sequence[Latency], bound: Bound) -> dict[str, Any]:
    events = json_events(up.lines())
    healthy = event_times(events, "service healthy")
    milestones = {label: None if at is None else at - up.launched_at for label, at in (
        ("run_started_s", first_time(events, "run started")),
        ("first_created_s", first_time(events, "container created")),
        ("first_started_s", first_time(events, "container started")))}
    detection = differences(healthy, actual)
    services_report = report.get("services") or {}
    probes = {name: int((services_report.get(name) or {}).get("probe_attempts") or 0)
              for name in topology.names}
    ready_s = all_ready(first_ready, up.launched_at)
    services = {}
    for name in topology.names:
        first = first_ready.get(name)
        services[name] = {
            "delay_s": delays.get(name, 0.0),
            "host_port": ports[name],
            "ready_s": None if first is None else first - up.launched_at,
            "standin_ready_s": None if name not in actual else actual[name] - up.launched_at,
            "healthy_s": None if name not in healthy else healthy[name] - up.launched_at,
            "detection_s": detection.get(name),
            "probe_attempts": probes[name],
            "poller_probes": poller_probes.get(name, 0),
            "ollamatopo": services_report.get(name),
        }
    detection_spread = spread(detection)
    probe_counts = list(probes.values())
    return {
        "services": services,
        "all_ready_s": ready_s,
        "up_exit_s": up.wall_s,
        "milestones": milestones,
        "up_cpu_s": up.cpu_s,
        "up_max_rss_mb": up.max_rss_mb,
        "ollamatopo_total_s": report.get("total_s"),
        "down_s": down.wall_s,
        "down_exit_code": down.exit_code,
        **({"down_error": down.tail(5)} if down.exit_code else {}),
        "latency_samples": [asdict(sample) for sample in samples],
        "bound": {**asdict(bound), "saved_s": bound.saved_s},
        "ratio_to_bound": ratio(ready_s, bound.critical_s),
        "over_bound_s": None if ready_s is None else ready_s - bound.critical_s,
        "detection": asdict(detection_spread),
        "probes_per_service": {"median": median(probe_counts), "max": max(probe_counts,
                                                                           default=0),
                               "total": sum(probe_counts)},
    }


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
