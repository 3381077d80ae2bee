"""One phase of N zero-delay stand-ins: ollamatopo against the engine's own throughput.

For each N, in the same run: the engine baseline (a network, then N containers created
and started by a pool of threads through the SDK, as parallel `docker run -d`), then
`ollamatopo up` of the same N. Both are timed by the same poller with the same
criterion: /health answers 200 on the container's address on the bridge (nothing is
published, so no docker-proxy per container), polled from the engine's `start` event
on. ollamatopo's http probes go to the same addresses. Then `ollamatopo down`, timed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from bench import _child
from bench._docker import BenchError, Engine
from bench._plans import pick_subnet, scale_addresses, scale_names, scale_plan
from bench._poller import ReadinessPoller, Target
from bench._stats import all_ready, linear_fit, ratio

DEFAULT_SIZES = (10, 50, 100, 200)
BASELINE_THREADS = 16


def ready_timeout(n: int) -> float:
    return 60.0 + 2.0 * n


def _targets(names: list[str], addresses: list[str]) -> list[Target]:
    return [Target(name, address, 8080) for name, address in zip(names, addresses, strict=True)]


def run_baseline(engine: Engine, image: str, n: int, subnet: str,
                 threads: int = BASELINE_THREADS) -> dict[str, Any]:
    names, addresses = scale_names(n), scale_addresses(subnet, n)
    specs = [{"name": f"bench-{engine.session}-base-{name}", "image": image,
              "network": "", "address": address, "target": name}
             for name, address in zip(names, addresses, strict=True)]
    poller = ReadinessPoller(_targets(names, addresses), gated=True)
    network = ""
    try:
        with poller, engine.watch_starts(poller.open_gate):
            began = time.time()
            network = engine.create_network(f"bench-{engine.session}-base-{n}", subnet)
            networked = time.time()
            for spec in specs:
                spec["network"] = network
            ids = engine.run_many(specs, threads)
            started = time.time()
            finished = poller.wait(ready_timeout(n))
        if not finished:
            raise BenchError(f"engine baseline: not every stand-in of {n} answered /health")
        removing = time.time()
        engine.remove_many(ids, threads)
        engine.remove_network(network)
        removed = time.time()
    finally:
        engine.sweep()
    return {
        "threads": threads,
        "all_ready_s": all_ready(poller.first_ready(), began),
        "network_s": networked - began,
        "all_started_s": started - began,
        "remove_s": removed - removing,
    }


def run_ollamatopo(engine: Engine, image: str, n: int, subnet: str) -> dict[str, Any]:
    names, addresses = scale_names(n), scale_addresses(subnet, n)
    project = f"bench-scale-{n}-{engine.session}"
    plan = scale_plan(n, project=project, image=image, subnet=subnet, labels=engine.labels())
    with tempfile.TemporaryDirectory(prefix="ollamatopo-bench-") as folder:
        root = Path(folder)
        plan_path = root / "scale.yaml"
        plan_path.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
        env = _child.ollamatopo_env(root / "state")
        poller = ReadinessPoller(_targets(names, addresses), gated=True)
        try:
            with poller, engine.watch_starts(poller.open_gate):
                up = _child.run(_child.ollamatopo_argv(
                    "up", "--plan", str(plan_path), "--log-format", "json",
                    "--report", str(root / "report.json")), env=env,
                    timeout_s=ready_timeout(n) + 60)
                finished = poller.wait(0 if up.exit_code else ready_timeout(n))
            if up.exit_code != 0:
                raise BenchError(f"ollamatopo up of {n} exited {up.exit_code}:\n{up.tail()}")
            if not finished:
                raise BenchError(f"ollamatopo: not every stand-in of {n} answered /health")
            down = _child.run(_child.ollamatopo_argv("down", "--plan", str(plan_path),
                                                     "--log-format", "json"),
                              env=env, timeout_s=120 + n)
        finally:
            engine.sweep()
    return {
        "all_ready_s": all_ready(poller.first_ready(), up.launched_at),
        "up_exit_s": up.wall_s,
        "cpu_s": up.cpu_s,
        "user_s": up.user_s,
        "sys_s": up.sys_s,
        "max_rss_mb": up.max_rss_mb,
        "down_s": down.wall_s,
        "down_exit_code": down.exit_code,
        **({"down_error": down.tail(5)} if down.exit_code else {}),
        "down_cpu_s": down.cpu_s,
    }


def run_scale(engine: Engine, image: str, n: int,
              threads: int = BASELINE_THREADS) -> dict[str, Any]:
    # Each side picks its own free subnet: a network the engine refused to remove
    # (moby#42119) still holds the subnet of the side before.
    subnet = pick_subnet(n, engine.subnets_in_use())
    baseline = run_baseline(engine, image, n, subnet, threads)
    our_subnet = pick_subnet(n, engine.subnets_in_use())
    ours = run_ollamatopo(engine, image, n, our_subnet)
    return {
        "n": n,
        "subnets": {"engine": subnet, "ollamatopo": our_subnet},
        "engine": baseline,
        "ollamatopo": ours,
        "throughput_ratio": ratio(baseline["all_ready_s"], ours["all_ready_s"]),
        "cpu_ms_per_service": None if not n else 1000 * ours["cpu_s"] / n,
    }


# What is fitted as a line in N: (name, where in a run's result).
FITTED = (("ollamatopo_ready_s", ("ollamatopo", "all_ready_s")),
          ("ollamatopo_cpu_s", ("ollamatopo", "cpu_s")),
          ("engine_ready_s", ("engine", "all_ready_s")),
          ("ollamatopo_down_s", ("ollamatopo", "down_s")))


def scale_fits(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float] | None]:
    """A least-squares line in N for each figure over the sizes measured: the slope is the
    cost per service, and a small worst residual says the cost grows linearly."""
    fits: dict[str, dict[str, float] | None] = {}
    for name, (side, key) in FITTED:
        points = [(float(run["n"]), run[side][key]) for run in runs
                  if "error" not in run and isinstance(run[side].get(key), int | float)]
        fit = linear_fit([x for x, _ in points], [y for _, y in points])
        fits[name] = None if fit is None else asdict(fit)
    return fits
