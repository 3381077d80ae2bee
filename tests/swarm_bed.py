"""A real two-node Docker swarm on this one machine: the test bed of the swarm backend (issue 14).

The manager is the host's own engine (`swarm init` on 10.99.0.1). The worker is a second
dockerd in a network namespace of its own, reached over a veth pair (10.99.0.1/24 on the
host side, 10.99.0.2/24 inside; the next free 10.99.N.0/24 when that one is held), joined
as a worker. Node labels: `role=data` on the manager, `role=gpu` on the worker. Images
reach the worker by `docker save | docker load` (nothing can be pulled here).
docs/swarm-bed.md has the facts and the figures.

Everything the bed makes is named after its id (`otsw` + 6 hex digits: the namespace, the
veth, the folders, and by convention the services the tests create through `bed.name()`)
and, where the engine takes labels, labelled `ollamatopo.swarm-bed=<id>`. Teardown runs
also on failure, Ctrl+C and SIGTERM; it checks what it leaves behind and raises
`BedProblem` when something stayed, or when the host's `docker0` went missing (it is then
recreated). A bed killed outright (SIGKILL) is swept by the next one, by prefix and label.

The bed refuses (the pytest fixture skips, saying why) when not root, when `ip netns` or a
tool is missing, when another bed runs, and when the host engine is already in a swarm:
it never leaves or changes a swarm it did not make.

    pytest -m swarm                   # the tests that use the bed (the `swarm_bed` fixture)
    python tests/swarm_bed.py         # make a bed, print its figures, tear it down
    python tests/swarm_bed.py --sweep # remove what a killed bed left

A test module takes the fixture and the hooks with `pytest_plugins = ["tests.swarm_bed"]`
and may import names from here too: this module has no assert for pytest to rewrite, hence
PYTEST_DONT_REWRITE (else pytest warns that it was imported before it could rewrite it).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

BED_LABEL = "ollamatopo.swarm-bed"  # its value: the bed's id
PREFIX = "otsw"
ID_PATTERN = re.compile(rf"^{PREFIX}[0-9a-f]{{6}}$")
# The veth link's /24: the first of 10.99.0-15 whose manager address no socket holds. An
# engine that left a swarm can keep its gossip listener (7946) bound to the old address
# after `swarm leave` ("Could not close DB: timeout waiting for leave broadcast" in its
# log, seen here once): a new swarm on that address then never gets its ingress sandbox
# ("bind: address already in use"), until that engine restarts, which is not the bed's to do.
LINK_SUBNETS = tuple(f"10.99.{index}" for index in range(16))
SWARM_PORTS = (2377, 7946)  # the manager's control and gossip ports on the link address
LINK_PREFIX = 24
# The rule for this shared machine: the bed's subnets stay in 10.97-10.99.
WORKER_BRIDGE = "10.98.0.1/24"  # the worker daemon's own docker0, inside its namespace
GWBRIDGE_SUBNETS = {"manager": "10.97.0.0/24", "worker": "10.97.1.0/24"}
ADDRESS_POOL = ("10.97.64.0/18", 24)  # the swarm's overlay subnets (ingress included)
GWBRIDGE = "docker_gwbridge"
ROLES = {"manager": "data", "worker": "gpu"}
RUN_ROOT = Path("/run")  # sockets and pid files: short paths (a unix socket's is <108)
DATA_ROOT = Path("/var/tmp")  # the worker's images and containers (vfs copies layers)
LOCK_PATH = Path("/run/lock/ollamatopo-swarm-bed.lock")
DOCKER0_DEFAULT = ("172.17.0.1/16", 1400)  # the host's docker0 as the issue found it
TOOLS = ("ip", "nsenter", "dockerd", "docker")
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
NETWORK_TIMEOUT = 15.0

FIGURES: dict[str, float] = {}  # name -> seconds, printed in pytest's summary


class BedError(Exception):
    """Making the bed failed; what was made is torn down."""


class BedProblem(Exception):
    """Teardown left something behind, or the host lost docker0: the machine needs a look."""


class Refused(Exception):
    """This machine cannot have a bed now; the message says why."""


def _run(command: Sequence[str], *, check: bool = True, timeout: float = 60.0,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # A session of its own: Ctrl+C reaches Python alone, which then decides (subprocess.run
    # kills the child when interrupted), so a teardown command is never cut by the terminal.
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout,
                          input=stdin, check=False, start_new_session=True)
    if check and done.returncode != 0:
        raise BedError(f"`{' '.join(command)}` exited {done.returncode}: "
                       f"{(done.stderr or done.stdout).strip()}")
    return done


def _ip_json(*args: str) -> list[dict[str, Any]]:
    done = _run(["ip", "-j", *args], check=False)
    return list(json.loads(done.stdout or "[]")) if done.returncode == 0 else []


def _swarm_state(docker: Sequence[str]) -> str:
    done = _run([*docker, "info", "--format", "{{.Swarm.LocalNodeState}}"], check=False,
                timeout=30)
    return done.stdout.strip() if done.returncode == 0 else f"unknown ({done.stderr.strip()})"


@dataclass(frozen=True)
class Node:
    role: str  # "manager" | "worker"
    address: str
    docker: tuple[str, ...]  # the CLI bound to this node's engine
    url: str | None  # the SDK's base_url; None: the environment's engine


@dataclass
class SwarmBed:
    """A bed's names and handles; `swarm_bed()` makes it, tears it down and checks."""

    id: str
    manager: Node = field(init=False)
    worker: Node = field(init=False)
    node_ids: dict[str, str] = field(default_factory=dict)  # role -> swarm node id
    made: set[str] = field(default_factory=set)  # what teardown has to undo
    task_containers_before: set[str] = field(default_factory=set)
    process: subprocess.Popen[bytes] | None = None  # the worker's dockerd, when we started it
    images: tuple[str, ...] = ()  # copied to the worker
    step_times: dict[str, float] = field(default_factory=dict)  # step -> seconds
    docker0: tuple[str, int] | None = None  # the host's, as found: checked at teardown

    def __post_init__(self) -> None:
        link = _free_link()
        self.manager = Node("manager", f"{link}.1", ("docker",), None)
        self.worker = Node("worker", f"{link}.2", ("docker", "-H", f"unix://{self.socket}"),
                           f"unix://{self.socket}")

    # names
    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.id

    @property
    def data_dir(self) -> Path:
        return DATA_ROOT / self.id

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "dockerd.pid"

    @property
    def netns(self) -> str:
        return self.id

    @property
    def veth_host(self) -> str:
        return f"{self.id}h"  # interface names are at most 15 characters

    @property
    def veth_worker(self) -> str:
        return f"{self.id}w"

    @property
    def labels(self) -> dict[str, str]:
        return {BED_LABEL: self.id}

    def name(self, suffix: str) -> str:
        """A name for something a test makes on the bed (a service, a network)."""
        return f"{self.id}-{suffix}"

    # handles
    def docker(self, node: Node, *args: str, check: bool = True, timeout: float = 60.0
               ) -> subprocess.CompletedProcess[str]:
        return _run([*node.docker, *args], check=check, timeout=timeout)

    def client(self, node: Node) -> Any:
        import docker

        return docker.from_env() if node.url is None else docker.DockerClient(base_url=node.url)

    def copy_image(self, reference: str) -> None:
        """`docker save | docker load`: the worker cannot pull from anywhere."""
        with subprocess.Popen(["docker", "save", reference], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, start_new_session=True) as save:
            load = subprocess.run([*self.worker.docker, "load", "-q"], stdin=save.stdout,
                                  capture_output=True, timeout=120, check=False,
                                  start_new_session=True)
            saved = save.wait(timeout=120)
        if saved != 0 or load.returncode != 0:
            raise BedError(f"copying {reference} to the worker failed: "
                           f"{load.stderr.decode(errors='replace').strip()}")


# -- refusals ------------------------------------------------------------------------------

def refusal() -> str | None:
    """Why this machine cannot have a bed (None: it can). Reads only; changes nothing."""
    if os.geteuid() != 0:
        return "not root: a second dockerd and a network namespace need root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (iproute2, util-linux, docker.io)"
    done = _run(["ip", "netns", "list"], check=False)
    if done.returncode != 0:
        return f"`ip netns` is unavailable: {done.stderr.strip()}"
    state = _swarm_state(("docker",))
    if state != "inactive" and not _stale_swarm():
        return (f"the engine is already in a swarm (LocalNodeState={state}); the bed never "
                "leaves or changes a swarm it did not make")
    return None


def _stale_swarm() -> str | None:
    """The id of a bed whose swarm the host engine is still in (a bed killed outright)."""
    done = _run(["docker", "node", "inspect", "self", "--format",
                 "{{json .Spec.Labels}}"], check=False, timeout=30)
    if done.returncode != 0:
        return None  # not a manager, or no swarm: not one of ours either way
    labels = json.loads(done.stdout or "null") or {}
    found = labels.get(BED_LABEL, "")
    return found if ID_PATTERN.match(found) else None


@contextlib.contextmanager
def _bed_lock() -> Iterator[None]:
    """One bed per machine: its addresses and the host's swarm are single."""
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_PATH.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Refused(f"another swarm bed runs on this machine (lock {LOCK_PATH})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- making --------------------------------------------------------------------------------

def _docker0() -> tuple[str, int] | None:
    for link in _ip_json("addr", "show", "dev", "docker0"):
        for address in link.get("addr_info", []):
            if address.get("family") == "inet":
                return f"{address['local']}/{address['prefixlen']}", int(link.get("mtu", 1500))
        return DOCKER0_DEFAULT[0], int(link.get("mtu", 1500))
    return None


def _free_link() -> str:
    """The first of LINK_SUBNETS whose addresses are on no interface and whose manager
    address no socket is bound to (the swarm's ports)."""
    on_links = {address["local"] for link in _ip_json("addr") for address in
                link.get("addr_info", [])}
    bound = _bound_addresses(SWARM_PORTS)
    for link in LINK_SUBNETS:
        if not {f"{link}.1", f"{link}.2"} & (on_links | bound):
            return link
    raise BedError(f"every link subnet {LINK_SUBNETS[0]}-{LINK_SUBNETS[-1]}.0/24 is taken "
                   "on this host (an address, or a socket on the swarm's ports): look at "
                   f"`ss -ltnu` for {SWARM_PORTS}")


def _bound_addresses(ports: Sequence[int]) -> set[str]:
    """IPv4 addresses with a TCP or UDP socket bound to one of `ports` (/proc/net: the
    kernel's own table, which needs no tool)."""
    found = set()
    for table in ("tcp", "udp"):
        lines = Path(f"/proc/net/{table}").read_text(encoding="ascii").splitlines()[1:]
        for line in lines:
            address, port = line.split()[1].split(":")
            if int(port, 16) in ports:
                found.add(socket.inet_ntoa(int(address, 16).to_bytes(4, "little")))
    return found


def _network_link(bed: SwarmBed) -> None:
    _run(["ip", "netns", "add", bed.netns])
    bed.made.add("netns")
    _run(["ip", "link", "add", bed.veth_host, "type", "veth", "peer", "name", bed.veth_worker])
    bed.made.add("veth")
    _run(["ip", "link", "set", bed.veth_worker, "netns", bed.netns])
    _run(["ip", "addr", "add", f"{bed.manager.address}/{LINK_PREFIX}", "dev", bed.veth_host])
    _run(["ip", "link", "set", bed.veth_host, "up"])
    inside = ["ip", "-n", bed.netns]
    _run([*inside, "addr", "add", f"{bed.worker.address}/{LINK_PREFIX}", "dev",
          bed.veth_worker])
    _run([*inside, "link", "set", bed.veth_worker, "up"])
    _run([*inside, "link", "set", "lo", "up"])


def _start_worker_daemon(bed: SwarmBed) -> None:
    # Its own empty config file: the host's /etc/docker/daemon.json names the host's
    # data-root and storage driver. `nsenter --net`, not `ip netns exec`: the latter
    # remounts /sys and the daemon then finds no devices cgroup. Its own containerd
    # namespaces keep it apart from the host's should it ever share a system containerd.
    bed.run_dir.mkdir(mode=0o700)
    bed.made.add("dirs")
    bed.data_dir.mkdir(mode=0o700)
    config = bed.run_dir / "daemon.json"
    config.write_text("{}\n", encoding="utf-8")
    command = [
        "nsenter", f"--net=/var/run/netns/{bed.netns}", "dockerd",
        "--config-file", str(config), "--data-root", str(bed.data_dir / "data"),
        "--exec-root", str(bed.run_dir / "exec"), "-H", f"unix://{bed.socket}",
        "--pidfile", str(bed.pidfile), "--storage-driver", "vfs", "--bip", WORKER_BRIDGE,
        "--containerd-namespace", bed.id, "--containerd-plugins-namespace", f"{bed.id}p",
        "--label", f"{BED_LABEL}={bed.id}",
    ]
    with (bed.run_dir / "dockerd.log").open("wb") as log:
        bed.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=log, start_new_session=True)  # Ctrl+C: ours
    bed.made.add("daemon")
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if bed.socket.exists() and bed.docker(bed.worker, "version", check=False,
                                              timeout=10).returncode == 0:
            return
        if bed.process.poll() is not None:
            break  # it exited: its log says why
        time.sleep(0.1)
    raise BedError(f"the worker's dockerd did not answer within {READY_TIMEOUT:g} s; "
                   f"its log ends:\n{_log_tail(bed)}")


def _log_tail(bed: SwarmBed, lines: int = 15) -> str:
    path = bed.run_dir / "dockerd.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _gwbridge(bed: SwarmBed, node: Node) -> None:
    """docker_gwbridge made beforehand, in our subnet and with our label (else the engine
    picks a 172.x subnet that other work on this machine may want)."""
    if bed.docker(node, "network", "inspect", GWBRIDGE, check=False).returncode == 0:
        return  # someone's: used as it is and left alone
    bed.docker(node, "network", "create", "--subnet", GWBRIDGE_SUBNETS[node.role],
               "--label", f"{BED_LABEL}={bed.id}",
               "--opt", f"com.docker.network.bridge.name={GWBRIDGE}",
               "--opt", "com.docker.network.bridge.enable_icc=false",
               "--opt", "com.docker.network.bridge.enable_ip_masquerade=true", GWBRIDGE)


def _task_containers() -> set[str]:
    done = _run(["docker", "ps", "-aq", "--no-trunc", "--filter", "label=com.docker.swarm.task.id"],
                check=False)
    return set(done.stdout.split())


def _make_swarm(bed: SwarmBed) -> None:
    bed.task_containers_before = _task_containers()
    _gwbridge(bed, bed.manager)
    pool, mask = ADDRESS_POOL
    done = bed.docker(bed.manager, "swarm", "init", "--advertise-addr", bed.manager.address,
                      "--listen-addr", f"{bed.manager.address}:2377", "--default-addr-pool", pool,
                      "--default-addr-pool-mask-length", str(mask), check=False)
    if done.returncode != 0:
        if "already part of a swarm" not in done.stderr:
            bed.made.add("swarm")  # half made is ours to undo
        raise BedError(f"swarm init failed: {done.stderr.strip()}")
    bed.made.add("swarm")
    bed.node_ids["manager"] = _node_id(bed, bed.manager)
    bed.docker(bed.manager, "node", "update", "--label-add", f"role={ROLES['manager']}",
               "--label-add", f"{BED_LABEL}={bed.id}", bed.node_ids["manager"])
    token = bed.docker(bed.manager, "swarm", "join-token", "-q", "worker").stdout.strip()
    _gwbridge(bed, bed.worker)
    bed.docker(bed.worker, "swarm", "join", "--token", token, "--advertise-addr",
               bed.worker.address, "--listen-addr", f"{bed.worker.address}:2377",
               f"{bed.manager.address}:2377")
    bed.node_ids["worker"] = _node_id(bed, bed.worker)
    bed.docker(bed.manager, "node", "update", "--label-add", f"role={ROLES['worker']}",
               "--label-add", f"{BED_LABEL}={bed.id}", bed.node_ids["worker"])
    _wait_until(lambda: all(state == "ready" for state in node_states(bed).values())
                and len(node_states(bed)) == 2, "both nodes Ready")
    # Ready also means each engine has set up its ingress sandbox: a swarm left while that
    # is under way leaves a stale `ingress` network on the engine that no API call removes
    # (seen here once, after a bed torn down right after it was made).
    for node in (bed.manager, bed.worker):
        _wait_until(functools.partial(_has_ingress_sandbox, bed, node),
                    f"the {node.role}'s ingress sandbox")


def _has_ingress_sandbox(bed: SwarmBed, node: Node) -> bool:
    done = bed.docker(node, "network", "inspect", "ingress", "--format",
                      "{{json .Containers}}", check=False)
    return done.returncode == 0 and "ingress-sbox" in done.stdout


def _node_id(bed: SwarmBed, node: Node) -> str:
    return bed.docker(node, "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()


def node_states(bed: SwarmBed) -> dict[str, str]:
    """Swarm node id -> its state (ready, down, ...), as the manager sees it."""
    done = bed.docker(bed.manager, "node", "ls", "--format", "{{.ID}} {{.Status}}")
    return {line.split()[0]: line.split()[1].lower() for line in done.stdout.splitlines()}


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT,
                interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BedError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _copy_images(bed: SwarmBed) -> None:
    for reference in bed.images:
        bed.copy_image(reference)


def _make(bed: SwarmBed) -> None:
    found = _docker0()
    if found is None:
        raise BedError("the host has no docker0 before the bed is made; look at it first")
    bed.docker0 = found
    for step in (_network_link, _start_worker_daemon, _copy_images, _make_swarm):
        with _timed(bed, step.__name__):
            step(bed)


@contextlib.contextmanager
def _timed(bed: SwarmBed, name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        bed.step_times[name] = time.monotonic() - started


# -- tearing down --------------------------------------------------------------------------

def _pid_of(bed: SwarmBed) -> int | None:
    """The worker daemon's pid, if that process still runs and is that daemon."""
    try:
        pid = int(bed.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(bed.socket).encode() in cmdline else None


def _stop_daemon(bed: SwarmBed) -> None:
    pid = _pid_of(bed)
    if pid is not None:
        # Its containers first: a daemon stopped under them leaves shims behind.
        ids = bed.docker(bed.worker, "ps", "-aq", check=False, timeout=30).stdout.split()
        if ids:
            bed.docker(bed.worker, "rm", "-f", *ids, check=False, timeout=60)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid_of(bed) == pid and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_of(bed) == pid:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
    if bed.process is not None:  # reaped, not left a zombie
        with contextlib.suppress(subprocess.TimeoutExpired):
            bed.process.wait(timeout=STOP_TIMEOUT)
    # What is left in its namespace (its containerd and shims after a SIGKILL).
    done = _run(["ip", "netns", "pids", bed.netns], check=False)
    for text in done.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(text), signal.SIGKILL)


def _unmount_under(*folders: Path) -> None:
    """Mounts the daemon left under its folders (netns and shm binds), deepest first, so
    that removing the folders never reaches through a mount."""
    roots = [str(folder) + "/" for folder in folders]
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point.startswith(root) or point + "/" == root for root in roots):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        _run(["umount", "-l", point], check=False)


def _leave_swarm(bed: SwarmBed) -> None:
    if "swarm" not in bed.made:
        return
    if _swarm_state(bed.manager.docker) == "active":
        # Services first, so their tasks stop in order rather than with the swarm.
        services = bed.docker(bed.manager, "service", "ls", "-q", check=False).stdout.split()
        if services:
            bed.docker(bed.manager, "service", "rm", *services, check=False)
    # The manager first: a worker leaving a live swarm waits about 7 s for it, one leaving
    # a swarm that is gone takes 0.3 s (measured here).
    bed.docker(bed.manager, "swarm", "leave", "--force", check=False, timeout=60)
    if "daemon" in bed.made and _pid_of(bed) is not None:
        bed.docker(bed.worker, "swarm", "leave", "--force", check=False, timeout=60)
    # Task containers the swarm left on the host (only those born while the bed lived).
    left = _task_containers() - bed.task_containers_before
    if left:
        bed.docker(bed.manager, "rm", "-f", *left, check=False)


def _remove_networks(bed: SwarmBed) -> None:
    """The host's networks labelled by a bed (docker_gwbridge), once the engine has let go
    of `ingress` after the leave (its sandbox holds an endpoint on docker_gwbridge until
    then). The worker's networks go with its data folder."""
    if _swarm_state(bed.manager.docker) != "inactive":
        return  # not ours to change (or the leave failed, which teardown reports)
    if "swarm" in bed.made:
        with contextlib.suppress(BedError):
            _wait_until(lambda: not _host_networks("name=ingress"),
                        "the engine to drop ingress", timeout=NETWORK_TIMEOUT)

    def removed() -> bool:
        for network in _host_networks(f"label={BED_LABEL}"):
            bed.docker(bed.manager, "network", "rm", network, check=False)
        return not _host_networks(f"label={BED_LABEL}")

    with contextlib.suppress(BedError):  # what stays is reported by _leftovers
        _wait_until(removed, "the bed's networks to go", timeout=NETWORK_TIMEOUT, interval=0.5)


def _host_networks(selector: str) -> list[str]:
    """The host engine's networks that `docker network ls --filter SELECTOR` lists (exactly
    `ingress` for name=ingress, not every name containing it)."""
    done = _run(["docker", "network", "ls", "--filter", selector, "--format",
                 "{{.ID}} {{.Name}}"], check=False)
    found = [line.split() for line in done.stdout.splitlines() if line.strip()]
    wanted = selector.removeprefix("name=") if selector.startswith("name=") else None
    return [net_id for net_id, name in found if wanted is None or name == wanted]


def _teardown(bed: SwarmBed) -> None:
    """Undo everything, each step whatever the others did; every step tolerates absence."""
    steps: list[Callable[[SwarmBed], None]] = [_leave_swarm, _remove_networks, _stop_daemon,
                                                _remove_link, _remove_dirs]
    errors = []
    for step in steps:
        with _timed(bed, step.__name__):
            try:
                step(bed)
            except Exception as error:  # the other steps still run
                errors.append(f"{step.__name__}: {error}")
    problems = errors + _leftovers(bed)
    if problems:
        raise BedProblem("the swarm bed's teardown left: " + "; ".join(problems))


def _remove_link(bed: SwarmBed) -> None:
    if "netns" in bed.made:
        _run(["ip", "netns", "delete", bed.netns], check=False)
    if "veth" in bed.made:  # gone with the namespace, normally
        _run(["ip", "link", "delete", bed.veth_host], check=False)


def _remove_dirs(bed: SwarmBed) -> None:
    if "dirs" in bed.made:
        _unmount_under(bed.run_dir, bed.data_dir)
        for folder in (bed.run_dir, bed.data_dir):
            _run(["rm", "-rf", "--one-file-system", str(folder)], check=False, timeout=300)


def _leftovers(bed: SwarmBed) -> list[str]:
    found = []
    if "swarm" in bed.made and (state := _swarm_state(bed.manager.docker)) != "inactive":
        found.append(f"the host engine is still in a swarm ({state})")
    if _pid_of(bed) is not None:
        found.append(f"the worker's dockerd still runs (pid file {bed.pidfile})")
    if _run(["ip", "netns", "pids", bed.netns], check=False).returncode == 0:
        found.append(f"network namespace {bed.netns}")
    if _ip_json("link", "show", "dev", bed.veth_host):
        found.append(f"veth {bed.veth_host}")
    found += [f"folder {folder}" for folder in (bed.run_dir, bed.data_dir) if folder.exists()]
    found += [f"network {network} (labelled {BED_LABEL})"
              for network in _host_networks(f"label={BED_LABEL}")]
    if ("swarm" in bed.made and _swarm_state(bed.manager.docker) == "inactive"
            and _host_networks("name=ingress")):
        found.append("a stale `ingress` network on the engine (no API call removes it outside "
                     "a swarm; the next bed's swarm init and leave clear it)")
    if bed.docker0 is not None and _docker0() is None:
        address, mtu = bed.docker0
        _recreate_docker0(address, mtu)
        found.append(f"the host's docker0 had vanished (recreated: {address}, mtu {mtu}); "
                     "find out why before running the bed again")
    return found


def _recreate_docker0(address: str, mtu: int) -> None:
    _run(["ip", "link", "add", "docker0", "type", "bridge"], check=False)
    _run(["ip", "addr", "add", address, "dev", "docker0"], check=False)
    _run(["ip", "link", "set", "docker0", "mtu", str(mtu), "up"], check=False)


def sweep() -> list[str]:
    """Remove what beds killed outright left (by prefix and label); call under the lock.
    Returns what it removed."""
    ids = set()
    ids |= {path.name for root in (RUN_ROOT, DATA_ROOT) for path in root.iterdir()
            if ID_PATTERN.match(path.name)}
    done = _run(["ip", "netns", "list"], check=False)
    ids |= {line.split()[0] for line in done.stdout.splitlines()
            if line and ID_PATTERN.match(line.split()[0])}
    ids |= {link["ifname"][:-1] for link in _ip_json("link", "show")
            if ID_PATTERN.match(link.get("ifname", "")[:-1])}
    done = _run(["docker", "network", "ls", "--filter", f"label={BED_LABEL}", "--format",
                 f'{{{{.Label "{BED_LABEL}"}}}}'], check=False)
    ids |= {value for value in done.stdout.split() if ID_PATTERN.match(value)}
    stale = _stale_swarm()
    if stale:
        ids.add(stale)
    for bed_id in sorted(ids):
        bed = SwarmBed(bed_id)
        bed.made |= {"netns", "veth", "dirs", "daemon"} | ({"swarm"} if bed_id == stale else set())
        with contextlib.suppress(BedProblem):
            _teardown(bed)
    return sorted(ids)


@contextlib.contextmanager
def _teardown_shielded() -> Iterator[None]:
    """Ctrl+C does not cut a teardown short (a half teardown is what breaks the machine)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM while the bed lives: the same as Ctrl+C, so teardown runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def swarm_bed(images: Sequence[str] = ("ollamatopo-standin:latest",)) -> Iterator[SwarmBed]:
    """Make a two-node swarm, yield it, always tear it down. Raises `Refused` (nothing
    made), `BedError` (making failed; torn down) or `BedProblem` (teardown left things)."""
    reason = refusal()
    if reason:
        raise Refused(reason)
    with _bed_lock(), _sigterm_interrupts():
        swept = sweep()
        if swept:
            print(f"swarm bed: swept what killed beds left: {', '.join(swept)}", file=sys.stderr)
        reason = refusal()  # again, now that no other bed can start
        if reason:
            raise Refused(reason)
        bed = SwarmBed(f"{PREFIX}{secrets.token_hex(3)}", images=tuple(images))
        started = time.monotonic()
        try:
            _make(bed)
            FIGURES["bed made"] = time.monotonic() - started
            yield bed
        finally:
            with _teardown_shielded():
                started = time.monotonic()
                _teardown(bed)
                FIGURES["bed torn down"] = time.monotonic() - started


# -- pytest --------------------------------------------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "swarm: uses a real two-node Docker swarm on this machine (tests/swarm_bed.py)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Swarm tests run last, together: the one bed of the session then lives only while they
    run, and the host's engine is in swarm mode for them alone, not under the other tests."""
    for item in items:
        # Opt-in by marker: `-m "not swarm"` then leaves out every test that would make a bed.
        if "swarm_bed" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
                "swarm"):
            raise pytest.UsageError(f"{item.nodeid} uses swarm_bed: mark it @pytest.mark.swarm")
    marked = [item for item in items if item.get_closest_marker("swarm")]
    items[:] = [item for item in items if not item.get_closest_marker("swarm")] + marked


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("swarm bed figures")
        for name, seconds in FIGURES.items():
            terminalreporter.write_line(f"{name}: {seconds:.2f} s")


@pytest.fixture(scope="session", name="swarm_bed")
def swarm_bed_fixture(request: pytest.FixtureRequest) -> Iterator[SwarmBed]:
    reason = refusal()
    if reason:
        pytest.skip(f"no swarm bed: {reason}")
    standin = request.getfixturevalue("standin")  # tests/conftest.py builds it when missing
    try:
        with swarm_bed((standin,)) as bed:
            yield bed
    except Refused as refused:
        pytest.skip(f"no swarm bed: {refused}")


def main(argv: Sequence[str]) -> int:
    if "--sweep" in argv:
        with _bed_lock():
            print("swept:", ", ".join(sweep()) or "nothing")
        return 0
    try:
        with swarm_bed() as bed:
            print(f"bed {bed.id}: nodes {node_states(bed)}")
    except Refused as refused:
        print(f"refused: {refused}")
        return 2
    print("steps:", ", ".join(f"{name} {seconds:.2f} s"
                                       for name, seconds in bed.step_times.items()))
    for name, seconds in FIGURES.items():
        print(f"{name}: {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
