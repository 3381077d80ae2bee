"""Everything the benchmark asks the Docker engine itself, through the docker SDK.

Every object the benchmark creates (or has ollamatopo and compose create) carries the
label `ollamatopo-bench.session=<id>`, and `sweep` removes containers, networks and
volumes by that label. Also here: the facts of the machine, the stand-in image without
HEALTHCHECK, the start-event watcher that gates the poller, and the engine's own
parallel create-and-start baseline.
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import docker.types

from bench._logs import ready_time
from bench._plans import STANDIN_PORT, TARGET_LABEL

LABEL = "ollamatopo-bench"
SESSION_LABEL = "ollamatopo-bench.session"
BASE_IMAGE = "ollamatopo-standin:latest"
BENCH_IMAGE = "ollamatopo-bench-standin:latest"
BASE_ID_LABEL = "ollamatopo-bench.base"


class BenchError(Exception):
    """A benchmark could not run (not: it ran slowly)."""


@dataclass(frozen=True)
class Sweep:
    containers: int
    networks: int
    volumes: int


class Engine:
    """The docker SDK client of one benchmark session."""

    def __init__(self, session: str) -> None:
        try:
            self.client = docker.from_env(max_pool_size=64, timeout=180)
            self.client.ping()
        except docker.errors.DockerException as error:
            raise BenchError(f"the Docker engine cannot be reached: {error}") from None
        self.session = session
        self.leaks: dict[str, str] = {}  # what could not be removed -> why

    def labels(self, **extra: str) -> dict[str, str]:
        return {LABEL: "1", SESSION_LABEL: self.session, **extra}

    @property
    def selector(self) -> str:
        return f"{SESSION_LABEL}={self.session}"

    def close(self) -> None:
        self.client.close()

    # --- facts ------------------------------------------------------------------------------

    def facts(self) -> dict[str, Any]:
        info = self.client.info()
        version = self.client.version()
        return {
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "memory_mb": round(info.get("MemTotal", 0) / 2**20),
            "docker_version": info.get("ServerVersion"),
            "docker_api": version.get("ApiVersion"),
            "storage_driver": info.get("Driver"),
            "cgroup_version": info.get("CgroupVersion"),
            "kernel": info.get("KernelVersion"),
            "os": info.get("OperatingSystem"),
            "python": platform.python_version(),
            "ollamatopo_commit": _git_commit(),
        }

    def subnets_in_use(self) -> list[str]:
        subnets = []
        for network in self.client.api.networks():
            for config in (network.get("IPAM") or {}).get("Config") or []:
                if config.get("Subnet"):
                    subnets.append(config["Subnet"])
        return subnets

    # --- the image --------------------------------------------------------------------------

    def ensure_image(self) -> str:
        """The stand-in without its HEALTHCHECK (built offline, FROM the local stand-in).

        The images the stand-ins replace have no HEALTHCHECK, and the stand-in's own,
        an exec every second in every container, would load two cores at N=200.
        """
        try:
            base = self.client.images.get(BASE_IMAGE)
        except docker.errors.ImageNotFound:
            raise BenchError(f"{BASE_IMAGE} is missing: run `make images` (or "
                             "`python images/build.py`)") from None
        try:
            existing = self.client.images.get(BENCH_IMAGE)
            if (existing.labels or {}).get(BASE_ID_LABEL) == base.id:
                return BENCH_IMAGE
        except docker.errors.ImageNotFound:
            pass
        recipe = f"FROM {BASE_IMAGE}\nHEALTHCHECK NONE\n".encode()
        self.client.images.build(fileobj=io.BytesIO(recipe), tag=BENCH_IMAGE, rm=True,
                                 pull=False, labels={LABEL: "image", BASE_ID_LABEL: base.id})
        return BENCH_IMAGE

    # --- containers -------------------------------------------------------------------------

    def create_network(self, name: str, subnet: str | None = None) -> str:
        ipam = None
        if subnet is not None:
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        network = self.client.networks.create(name, driver="bridge", ipam=ipam,
                                              labels=self.labels())
        return str(network.id)

    def create_standin(self, name: str, *, image: str, network: str,
                       address: str | None = None, host_port: int | None = None,
                       delay_s: float = 0.0, target: str | None = None,
                       more_networks: Sequence[str] = (),
                       volumes: Mapping[str, str] | None = None) -> str:
        """Create one stand-in on `network` (at `address`, its port published on loopback
        at `host_port`), connected to `more_networks` too, with named `volumes` (name ->
        path) mounted; its id."""
        api = self.client.api
        host_config = api.create_host_config(
            port_bindings={STANDIN_PORT: ("127.0.0.1", host_port)} if host_port else None,
            binds={volume: {"bind": path, "mode": "rw"}
                   for volume, path in (volumes or {}).items()} or None)
        networking = api.create_networking_config(
            {network: api.create_endpoint_config(ipv4_address=address)})
        created = api.create_container(
            image, name=name, environment={"STANDIN_DELAY": f"{delay_s:g}"},
            labels=self.labels(**({TARGET_LABEL: target} if target else {})),
            ports=[STANDIN_PORT] if host_port else None, host_config=host_config,
            networking_config=networking)
        for more in more_networks:
            api.connect_container_to_network(created["Id"], more)
        return str(created["Id"])

    def create_volume(self, name: str) -> str:
        return str(self.client.api.create_volume(name, labels=self.labels())["Name"])

    def start(self, container_id: str) -> None:
        self.client.api.start(container_id)

    def run_standin(self, name: str, **options: Any) -> str:
        """Create and start one stand-in, as `docker run -d` would; its id."""
        container_id = self.create_standin(name, **options)
        self.start(container_id)
        return container_id

    def run_many(self, specs: Sequence[Mapping[str, Any]], threads: int) -> list[str]:
        """`run_standin` for every spec, `threads` at a time."""
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda spec: self.run_standin(**spec), specs))

    def remove_many(self, ids: Sequence[str], threads: int) -> None:
        def remove(container_id: str) -> None:
            try:
                self.client.api.remove_container(container_id, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:  # e.g. a removal already under way
                self.leaks[container_id] = str(error.explanation or error)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(remove, ids))

    def remove_network(self, network_id: str, tries: int = 4) -> bool:
        """Remove a network; False (and noted in `leaks`) when the engine refuses.

        Docker 20.10 can keep counting endpoints of containers already removed when many
        were created or removed at once on one network (moby/moby#42119); it then refuses
        to remove the network until the daemon restarts. A short retry covers a slow
        engine; past that the network is reported, not fatal.
        """
        for attempt in range(tries):
            try:
                self.client.api.remove_network(network_id)
                return True
            except docker.errors.NotFound:
                return True
            except docker.errors.APIError as error:
                if attempt + 1 < tries:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                self.leaks[network_id] = str(error.explanation or error)
        return False

    def ready_times(self) -> dict[str, float]:
        """Per target label, when the engine received the stand-in's "standin ready" line,
        for this session's containers."""
        times: dict[str, float] = {}
        for container in self.client.containers.list(all=True,
                                                     filters={"label": self.selector}):
            target = (container.labels or {}).get(TARGET_LABEL)
            if not target:
                continue
            output = container.logs(timestamps=True, stdout=True, stderr=True)
            at = ready_time(output.decode("utf-8", "replace"))
            if at is not None:
                times[target] = at
        return times

    @contextmanager
    def watch_starts(self, on_start: Callable[[str], None]) -> Iterator[None]:
        """Call `on_start(target)` when a container of this session with a target label
        starts (from the engine's event stream, subscribed before this yields)."""
        stream = self.client.events(decode=True, filters={
            "type": "container", "event": "start", "label": self.selector})

        def pump() -> None:
            try:
                for event in stream:
                    attributes = (event.get("Actor") or {}).get("Attributes") or {}
                    target = attributes.get(TARGET_LABEL)
                    if target:
                        on_start(target)
            except Exception:  # the stream closed under us: nothing more to report
                return

        thread = threading.Thread(target=pump, name="bench-events", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stream.close()
            thread.join(timeout=2)

    # --- cleanup ----------------------------------------------------------------------------

    def sweep(self) -> Sweep:
        """Remove every container, network and volume of this session, by label. Never
        raises for what the engine refuses: that is kept in `leaks`."""
        selector = {"label": self.selector}
        try:
            containers = self.client.api.containers(all=True, quiet=True, filters=selector)
            self.remove_many([item["Id"] for item in containers], threads=8)
            networks = [network for network in self.client.api.networks(filters=selector)
                        if network["Id"] not in self.leaks]
            for network in networks:
                self.remove_network(network["Id"])
            volumes = (self.client.api.volumes(filters=selector) or {}).get("Volumes") or []
            for volume in volumes:
                with suppress(docker.errors.NotFound):
                    self.client.api.remove_volume(volume["Name"], force=True)
        except docker.errors.DockerException as error:
            self.leaks["sweep"] = f"the sweep by label failed: {error}"
            return Sweep(0, 0, 0)
        return Sweep(len(containers), len(networks), len(volumes))


def _git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


@dataclass(frozen=True)
class Latency:
    """A lone stand-in, in seconds from asking to create it: created, started, answering."""

    created_s: float
    started_s: float
    ready_s: float


def measure_latency(engine: Engine, image: str, host_port: int, repeats: int = 3
                    ) -> list[Latency]:
    """A zero-delay stand-in started alone on its own network, its port published on
    loopback, `repeats` times: create, start, then the first 200 on /health."""
    from bench._poller import ReadinessPoller, Target

    samples = []
    network = engine.create_network(f"bench-{engine.session}-latency")
    try:
        for index in range(repeats):
            target = Target("latency", "127.0.0.1", host_port)
            poller = ReadinessPoller([target], gated=True)
            with poller, engine.watch_starts(poller.open_gate):
                began = time.time()
                container = engine.create_standin(f"bench-{engine.session}-latency-{index}",
                                                  image=image, network=network,
                                                  host_port=host_port, target="latency")
                created = time.time()
                engine.start(container)
                started = time.time()
                answered = poller.wait(30)
                first = poller.first_ready()["latency"]
            engine.remove_many([container], threads=1)
            if not answered or first is None:
                raise BenchError("a lone stand-in did not answer /health within 30 s")
            samples.append(Latency(created - began, started - began, first - began))
    finally:
        engine.remove_network(network)
    return samples
