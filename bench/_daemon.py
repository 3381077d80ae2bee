"""The daemon's thin client: `status` and `up` of the seed topology through a resident
daemon's control socket, beside the same commands without a daemon.

One run: the seed plan (ten stand-ins, a tenth of the seed's delays) is brought up by
`up --supervise`; `status --plan` is timed through its socket; `down` through the socket
leaves the daemon idle; then `up --plan` through the socket is measured like the `seed`
benchmark's direct `up` (the poller's first 200 per service, from each container's start
event, against the critical-path bound). Last the daemon is stopped and `status` timed
again, now doing the work itself (an interpreter start, the plan, the engine, a probe
per service).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import yaml

from bench import _child
from bench._docker import BenchError, Engine, measure_latency
from bench._plans import SEED_DELAYS, SeedTopology, load_seed, seed_plan
from bench._poller import ReadinessPoller
from bench._ports import free_ports, loopback_targets, seed_ports
from bench._seed import READY_TIMEOUT_S, read_json, seed_result
from bench._stats import compute_bound, median

STATUS_REPEATS = 10
DIRECT_STATUS_REPEATS = 5


def run_daemon_bench(engine: Engine, image: str, topology: SeedTopology | None = None,
                     delays: Mapping[str, float] = SEED_DELAYS) -> dict[str, Any]:
    topology = topology or load_seed()
    samples = measure_latency(engine, image, free_ports(1)[0])
    latency = median(sample.ready_s for sample in samples) or 0.0
    bound = compute_bound(topology.dependencies(),
                          [members for _, members in topology.phases], delays, latency)
    project = f"bench-daemon-{engine.session}"
    ports = seed_ports(topology)
    with tempfile.TemporaryDirectory(prefix="ollamatopo-bench-") as folder:
        root = Path(folder)
        plan_path = root / "seed.yaml"
        plan = seed_plan(topology, project=project, image=image, ports=ports,
                         labels=engine.labels(), delays=delays)
        plan_path.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
        env = _child.ollamatopo_env(root / "state")
        daemon = Daemon(plan_path, env)
        try:
            daemon.wait_supervising()
            status = _timed(["status", "--plan", str(plan_path)], env, STATUS_REPEATS)
            down = _child.run(_child.ollamatopo_argv("down", "--plan", str(plan_path),
                                                     "--log-format", "json"), env=env)
            if down.exit_code != 0:
                raise BenchError(f"down through the daemon exited {down.exit_code}:\n"
                                 f"{down.tail()}")
            warm = _up_through_daemon(engine, topology, delays, ports, plan_path, root, env,
                                      samples, bound)
            stop = _child.run(_child.ollamatopo_argv("daemon", "stop", "--plan",
                                                     str(plan_path)), env=env)
            daemon.wait(30)
            direct = _timed(["status", "--plan", str(plan_path)], env, DIRECT_STATUS_REPEATS)
            _child.run(_child.ollamatopo_argv("down", "--plan", str(plan_path), "--volumes",
                                              "--log-format", "json"), env=env)
        finally:
            daemon.kill()
            engine.sweep()
    return {"services": len(topology.names), "status_through_daemon_s": status,
            "status_through_daemon_median_s": median(status),
            "status_direct_s": direct, "status_direct_median_s": median(direct),
            "daemon_stop_exit_code": stop.exit_code, "up_through_daemon": warm}


def _timed(arguments: list[str], env: Mapping[str, str], repeats: int) -> list[float]:
    runs = [_child.run(_child.ollamatopo_argv(*arguments), env=env, timeout_s=120)
            for _ in range(repeats)]
    failed = [run for run in runs if run.exit_code != 0]
    if failed:
        raise BenchError(f"{' '.join(arguments)} exited {failed[0].exit_code}:\n"
                         f"{failed[0].tail()}")
    return [run.wall_s for run in runs]


def _up_through_daemon(engine: Engine, topology: SeedTopology, delays: Mapping[str, float],
                       ports: Mapping[str, int], plan_path: Path, root: Path,
                       env: Mapping[str, str], samples: Any, bound: Any) -> dict[str, Any]:
    """`up` of the idle daemon's plan through its socket, measured as `seed` measures."""
    report_path = root / "report-daemon.json"
    poller = ReadinessPoller(loopback_targets(ports), gated=True)
    with poller, engine.watch_starts(poller.open_gate):
        up = _child.run(_child.ollamatopo_argv("up", "--plan", str(plan_path), "--log-format",
                                               "json", "--report", str(report_path)),
                        env=env, timeout_s=READY_TIMEOUT_S + 60)
        poller.wait(0 if up.exit_code else READY_TIMEOUT_S)
    if up.exit_code != 0:
        raise BenchError(f"up through the daemon exited {up.exit_code}:\n{up.tail()}")
    actual = engine.ready_times()
    no_down = _child.ChildRun(argv=[], exit_code=0, launched_at=0.0, exited_at=0.0, user_s=0.0,
                              sys_s=0.0, max_rss_mb=0.0)
    return seed_result(topology, delays, ports, poller.first_ready(), poller.probes(), up,
                       actual, read_json(report_path), no_down, samples, bound)


class Daemon:
    """`up --supervise` of the plan, in the background; its log lines read as they come."""

    def __init__(self, plan_path: Path, env: Mapping[str, str], *extra: str) -> None:
        self.lines: list[str] = []
        self._supervising = threading.Event()
        self._process = subprocess.Popen(
            _child.ollamatopo_argv("up", "--supervise", "--plan", str(plan_path),
                                   "--log-format", "json", *extra),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            env=dict(env), cwd=_child.REPO, text=True)
        assert self._process.stdout is not None
        threading.Thread(target=self._read, args=(self._process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)
            if '"supervising"' in line:
                self._supervising.set()

    def wait_supervising(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._supervising.wait(0.1):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise BenchError("up --supervise did not come up:\n"
                                 + "".join(self.lines[-8:]))

    def wait(self, timeout_s: float) -> None:
        self._process.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self._process.pid, 9)
                self._process.wait()
