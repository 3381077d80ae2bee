"""The Docker engine facade: the only module that imports `docker`.

Async methods over the blocking SDK: each call runs in a worker thread under one
CapacityLimiter (the bound on concurrent API calls), and every SDK or transport
exception becomes an `EngineError` or `EngineUnreachable` right here.

Transient engine errors (a 5xx answer that names no lasting cause, a connection reset or
closed without an answer) are retried with tenacity where repeating the call is safe:
reads, stop, remove, update, volume creation. Calls that make something are retried only
after checking that the first attempt did not already make it: a container or network is
looked up by name and taken if it carries this run's label, a start is not repeated once
the container has started since the call began, a network connection not once the
container is on that network. So a retry never creates a second container.

No call holds up a cancelled caller (a signal, a deadline): its thread is abandoned and
finishes on its own within the client's timeout (`call_timeout_s`), and the engine keeps
a list of the calls in flight. A stalled engine therefore never pins a command: cleanups
run under `abandon_if_stalled`, and `close` names whatever was left unanswered. Measured
on Docker 20.10: the SDK's own read timeout is 60 s, and a listener that accepts but
never answers kept `up` for 60.7 s before this; connect and ping now give up after
`CONNECT_TIMEOUT_S`.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import io
import ipaddress
import re
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import docker
import docker.errors
import requests.exceptions
import structlog
import tenacity

from ollamatopo._errors import EngineError, EngineUnreachable, NotFound, OllamatopoError
from ollamatopo.engine._build import LABEL_BUILD_DIGEST, BuildConfig
from ollamatopo.engine._payloads import (
    LABEL_DEPENDS,
    LABEL_HASH,
    LABEL_NETWORK,
    LABEL_PROJECT,
    LABEL_RUN,
    LABEL_SERVICE,
    ContainerConfig,
    Endpoint,
    FileCopy,
    NetworkConfig,
    VolumeConfig,
    missing_folder,
)
from ollamatopo.engine._snapshot import ObservedContainer, ObservedNetwork, Snapshot

T = TypeVar("T")

HOW_TO_REACH = (
    "start the engine (`sudo systemctl start docker`, or `dockerd &`), or point DOCKER_HOST / "
    "OLLAMATOPO_DOCKER_HOST at it"
)


PULL_CONCURRENCY = 4
BUILD_CONCURRENCY = 4
# A build may be silent for minutes (a RUN step compiling); the connection is given up
# only after this long without a line (the default call timeout is far shorter).
BUILD_SILENCE_S = 900.0
BUILD_TAIL = 20  # lines of a failed build's log in its error
RETRY_ATTEMPTS = 4
RETRY_INITIAL_S = 0.1
RETRY_MAX_S = 1.0
NETWORK_SETTLE_S = 5.0
CONNECT_TIMEOUT_S = 5.0  # connect, version and ping: an engine that answers does so in ms
CALL_TIMEOUT_S = 30.0  # any other call without an answer (the SDK's default is 60 s)
# A cleanup gives up when calls have waited this long past what they may take and no call
# has been answered meanwhile: the engine is stalled, and a signal must still win.
STALL_S = 1.0
STOP_ALLOWANCE_S = 30.0  # a stop with the container's own grace period (compose allows 10)
# 5xx answers that name a lasting cause: repeating the call cannot help.
LASTING = ("address already in use", "port is already allocated", "overlaps",
           "oci runtime", "no space left", "invalid", "not permitted", "already exists",
           "could not select device driver")

Settle = Callable[[], Awaitable["tuple[T] | None"]]


def split_reference(image: str) -> tuple[str, str]:
    """`host:5000/team/app:1.2` -> (`host:5000/team/app`, `1.2`); no tag means `latest`;
    a digest reference keeps its digest as the tag part."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return repository, tag
    return image, "latest"


@dataclass(frozen=True)
class ImageFacts:
    platform: str  # os/architecture[/variant]
    tagged_at: float | None  # seconds since the epoch; None when the engine does not say


@dataclass(frozen=True)
class PublishedPort:
    host_ip: str
    host_port: int


@dataclass(frozen=True)
class ContainerState:
    id: str
    status: str  # created, running, exited, ...
    exit_code: int
    oom_killed: bool
    error: str
    health: str | None  # starting, healthy, unhealthy; None without a HEALTHCHECK
    ports: dict[str, list[PublishedPort]] = field(default_factory=dict)  # "8080/tcp" -> bindings
    addresses: dict[str, str] = field(default_factory=dict)  # network name -> IPv4

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class CreatedContainer:
    id: str
    # What the engine accepted but will not do (a setting this kernel lacks, such as a
    # block IO weight without the weight controller): it says so only in the create's answer.
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerEvent:
    container_id: str
    action: str  # start, die, oom, health_status: healthy, ...
    exit_code: int | None
    service: str | None


@dataclass(frozen=True)
class _InFlight:
    what: str
    began: float  # monotonic
    allowance_s: float  # how long the call may take by its nature (a stop's grace period)
    makes: bool  # it creates or starts something (a rollback must see what it made)


class Engine:
    """One connection to the Docker engine, shared by every task of a run."""

    def __init__(self, client: docker.APIClient, concurrency: int,
                 retry_attempts: int = RETRY_ATTEMPTS) -> None:
        self._client = client
        self._retry_attempts = max(1, retry_attempts)
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._pull_limiter = anyio.CapacityLimiter(PULL_CONCURRENCY)
        self._build_limiter = anyio.CapacityLimiter(BUILD_CONCURRENCY)
        self.base_url = str(client.base_url)
        self._in_flight: dict[int, _InFlight] = {}  # by worker thread
        self._in_flight_lock = threading.Lock()
        self._last_answer = time.monotonic()

    @classmethod
    async def connect(cls, base_url: str | None, concurrency: int,
                      connect_timeout_s: float = CONNECT_TIMEOUT_S,
                      call_timeout_s: float = CALL_TIMEOUT_S) -> Engine:
        def open_client() -> docker.APIClient:
            kwargs = docker.utils.kwargs_from_env()
            if base_url:
                kwargs["base_url"] = base_url
            kwargs.setdefault("base_url", "unix:///var/run/docker.sock")
            # The version lookup and the ping get the short timeout; every later call the
            # long one.
            client = docker.APIClient(version="auto", max_pool_size=concurrency + 8,
                                      timeout=connect_timeout_s, **kwargs)
            client.ping()
            client.timeout = call_timeout_s
            return client

        where = base_url or "the default socket"
        try:
            with anyio.fail_after(connect_timeout_s + 1):  # the client's own timeout is per read
                client = await anyio.to_thread.run_sync(open_client, abandon_on_cancel=True)
        except TimeoutError:
            raise EngineUnreachable(f"cannot reach the Docker engine at {where}: no answer in "
                                    f"{connect_timeout_s + 1:g}s; {HOW_TO_REACH}") from None
        except (docker.errors.DockerException, requests.exceptions.RequestException,
                OSError) as error:
            raise EngineUnreachable(f"cannot reach the Docker engine at {where}: "
                                    f"{_reason(error)}; {HOW_TO_REACH}") from None
        return cls(client, concurrency)

    @property
    def api_version(self) -> tuple[int, ...]:
        """The API version both sides speak (the client asked for the engine's own)."""
        return tuple(int(part) for part in str(self._client.api_version).split("."))

    def close(self) -> None:
        """Close the connection; name the calls the engine never answered (their threads
        were abandoned and end by the client's timeout, or with the process)."""
        left = self.unanswered()
        if left:
            structlog.get_logger("ollamatopo").warning(
                "engine calls abandoned", calls=len(left), unanswered=left[:10],
                note=f"the engine at {self.base_url} did not answer them; they may still "
                     "take effect: check with `status`")
        self._client.close()

    async def ping(self, deadline_s: float = CONNECT_TIMEOUT_S) -> None:
        await self._call("ping the engine", self._client.ping, retry=True,
                         deadline_s=deadline_s)

    # --- calls in flight --------------------------------------------------------------------

    def _calls(self) -> list[_InFlight]:
        with self._in_flight_lock:
            return sorted(self._in_flight.values(), key=lambda call: call.began)

    def unanswered(self) -> list[str]:
        """What the calls still in flight do, oldest first."""
        return [call.what for call in self._calls()]

    def stalled(self, since: float, limit_s: float = STALL_S) -> bool:
        """A call made after `since` has waited `limit_s` past its allowance, and no call
        was answered meanwhile. Calls abandoned before `since` do not count: a probe's
        exec may run for ever in its container, without the engine being at fault."""
        now = time.monotonic()
        overdue = any(call.began >= since and now - call.began > call.allowance_s + limit_s
                      for call in self._calls())
        return overdue and now - max(self._last_answer, since) > limit_s

    async def quiesce(self) -> None:
        """Wait until every create or start in flight (abandoned by a cancelled caller) has
        its answer, so what it made is seen by the next listing. Bounded by
        `abandon_if_stalled`."""
        while any(call.makes for call in self._calls()):
            await anyio.sleep(0.02)

    @contextlib.asynccontextmanager
    async def abandon_if_stalled(self, what: str,
                                 limit_s: float = STALL_S) -> AsyncIterator[None]:
        """Run the block (a cleanup) unless the engine stalls: then cancel it, say so, and
        go on, so a signal or a dead engine never holds the process."""
        since = time.monotonic()
        async with anyio.create_task_group() as group:

            async def watchdog() -> None:
                while not self.stalled(since, limit_s):
                    await anyio.sleep(0.05)
                structlog.get_logger("ollamatopo").error(
                    "engine stalled", abandoned=what, unanswered=self.unanswered()[:10],
                    note=f"no answer from {self.base_url} for {limit_s:g}s")
                group.cancel_scope.cancel()

            group.start_soon(watchdog)
            yield
            group.cancel_scope.cancel()

    async def _call(self, what: str, function: Callable[..., T], *args: Any,
                    limiter: anyio.CapacityLimiter | None = None, retry: bool = False,
                    settle: Settle[T] | None = None, deadline_s: float | None = None,
                    allowance_s: float = 0.0, **kwargs: Any) -> T:
        """Run one SDK call in a worker thread; its errors become ours.

        `retry`: the call is safe to repeat, and a transient error repeats it (with
        backoff, RETRY_ATTEMPTS in all). `settle`: the call makes something; before each
        repeat, `settle()` says whether the earlier attempt made it after all (a 1-tuple
        with the result) or not (None: repeat). `deadline_s`: an attempt without an answer
        by then is abandoned and the engine counts as unreachable. `allowance_s`: how long
        the call may take by its nature (see `stalled`). A cancelled caller never waits for
        the thread: it is abandoned and stays in flight until it ends by itself.
        """
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and settle is not None:
                done = await settle()
                if done is not None:
                    return done[0]
            with anyio.fail_after(deadline_s):
                return await anyio.to_thread.run_sync(
                    partial(self._tracked, what, allowance_s, settle is not None,
                            function, *args, **kwargs),
                    limiter=limiter or self._limiter, abandon_on_cancel=True)

        def log_retry(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            structlog.get_logger("ollamatopo").warning(
                "engine call retried", call=what, attempt=state.attempt_number,
                error=_reason(error) if error else "")

        retrying = tenacity.AsyncRetrying(
            sleep=anyio.sleep,
            stop=tenacity.stop_after_attempt(self._retry_attempts
                                             if retry or settle else 1),
            wait=tenacity.wait_random_exponential(multiplier=RETRY_INITIAL_S, max=RETRY_MAX_S),
            retry=tenacity.retry_if_exception(_transient),
            before_sleep=log_retry,
            reraise=True,
        )

        def tried() -> str:
            return f" (tried {attempts} times)" if attempts > 1 else ""

        try:
            return await retrying(attempt)
        except TimeoutError:
            raise EngineUnreachable(f"{what}: the Docker engine at {self.base_url} did not "
                                    f"answer in {deadline_s:g}s; {HOW_TO_REACH}") from None
        except docker.errors.APIError as error:
            raise _refusal(error)(f"{what}: {_reason(error)}{tried()}") from None
        except (requests.exceptions.ConnectionError, ConnectionError) as error:
            raise EngineUnreachable(f"{what}: lost the Docker engine at {self.base_url}: "
                                    f"{_reason(error)}{tried()}; {HOW_TO_REACH}") from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            raise EngineError(f"{what}: {_reason(error)}{tried()}") from None

    def _tracked(self, what: str, allowance_s: float, makes: bool,
                 function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function` in its worker thread, listed as in flight until it returns."""
        key = threading.get_ident()
        call = _InFlight(what, time.monotonic(), allowance_s, makes)
        with self._in_flight_lock:
            self._in_flight[key] = call
        try:
            return function(*args, **kwargs)
        finally:
            with self._in_flight_lock:
                del self._in_flight[key]
                self._last_answer = time.monotonic()

    # --- observe ----------------------------------------------------------------------------

    async def snapshot(self, project: str, images: list[str] | tuple[str, ...] = ()) -> Snapshot:
        label = {"label": [f"{LABEL_PROJECT}={project}"]}
        raw_containers = await self._call("list containers", self._client.containers,
                                          all=True, filters=label, retry=True)
        raw_networks = await self._call("list networks", self._client.networks, filters=label,
                                        retry=True)
        raw_volumes = await self._call("list volumes", self._client.volumes, filters=label,
                                       retry=True)
        containers = tuple(_observed_container(raw) for raw in raw_containers)
        networks = tuple(_observed_network(raw) for raw in raw_networks)
        volumes = tuple(v["Name"] for v in (raw_volumes or {}).get("Volumes") or [])
        image_ids, build_digests = {}, {}
        for image in images:
            raw = await self._image(image)
            if raw is not None:
                image_ids[image] = str(raw["Id"])
                if _labels(raw).get(LABEL_BUILD_DIGEST):
                    build_digests[image] = _labels(raw)[LABEL_BUILD_DIGEST]
        return Snapshot(project, containers, networks, volumes, image_ids, build_digests)

    async def objects_of_run(self, project: str, run_id: str) -> tuple[list[str], list[str]]:
        """Ids of the containers and networks that one `up` created (by its run label)."""
        labels = {LABEL_PROJECT: project, LABEL_RUN: run_id}
        networks = await self._call(
            "list networks", self._client.networks, retry=True,
            filters={"label": [f"{key}={value}" for key, value in labels.items()]})
        return await self.containers_labelled(labels), [str(n["Id"]) for n in networks]

    async def containers_labelled(self, labels: Mapping[str, str]) -> list[str]:
        """Ids of the containers (any state) that carry every one of `labels`."""
        label = {"label": [f"{key}={value}" for key, value in labels.items()]}
        raw = await self._call("list containers", self._client.containers, all=True,
                               filters=label, retry=True)
        return [str(container["Id"]) for container in raw]

    async def capacity(self) -> tuple[float, int]:
        """The host's CPU count and memory in bytes, as the engine sees them."""
        info = await self._call("read engine info", self._client.info, retry=True)
        return float(info.get("NCPU") or 0), int(info.get("MemTotal") or 0)

    async def image_id(self, image: str) -> str | None:
        raw = await self._image(image)
        return None if raw is None else str(raw["Id"])

    async def image_facts(self, image: str) -> ImageFacts | None:
        """The image's platform and when it was last tagged (pulled, built), or None when
        the engine has none of that reference."""
        raw = await self._image(image)
        if raw is None:
            return None
        platform = "/".join(part for part in (raw.get("Os"), raw.get("Architecture"),
                                              raw.get("Variant")) if part)
        tagged = _timestamp(str((raw.get("Metadata") or {}).get("LastTagTime") or ""))
        return ImageFacts(platform, tagged)

    async def _image(self, image: str) -> dict[str, Any] | None:
        """The image inspected, or None when the engine has no image of that reference."""
        try:
            raw: dict[str, Any] = await self._call(f"inspect image {image}",
                                                   self._client.inspect_image, image,
                                                   retry=True)
        except NotFound:
            return None
        return raw

    async def exists(self, kind: Literal["network", "volume"], name: str) -> bool:
        """Whether the engine has a network or volume of that name (an external one)."""
        inspect = (self._client.inspect_network if kind == "network"
                   else self._client.inspect_volume)
        try:
            await self._call(f"inspect {kind} {name}", inspect, name, retry=True)
        except NotFound:
            return False
        return True

    async def inspect(self, container_id: str) -> ContainerState:
        raw = await self._call(f"inspect container {container_id[:12]}",
                               self._client.inspect_container, container_id, retry=True)
        return _container_state(raw)

    async def logs(self, container_id: str, tail: int | str = "all") -> str:
        raw = await self._call("read logs", self._client.logs, container_id, stdout=True,
                               stderr=True, tail=tail, retry=True)
        return bytes(raw).decode("utf-8", errors="replace")

    async def follow_logs(self, container_id: str, tail: int | str,
                          on_line: Callable[[str], None]) -> None:
        """Every line the container prints from its last `tail` on, to `on_line` (in the
        event loop), until it stops. A cancelled caller abandons the thread, which stops
        reading at its next line."""
        cancelled = threading.Event()

        def run() -> None:
            partial_line = b""
            for chunk in self._client.logs(container_id, stdout=True, stderr=True,
                                           stream=True, follow=True, tail=tail):
                if cancelled.is_set():
                    return
                *lines, partial_line = (partial_line + bytes(chunk)).split(b"\n")
                for line in lines:
                    anyio.from_thread.run_sync(on_line, line.decode("utf-8", "replace"))
            if partial_line:
                anyio.from_thread.run_sync(on_line, partial_line.decode("utf-8", "replace"))

        try:
            # Its own limiter: a follow lasts as long as the container, other calls go on.
            await self._call(f"follow logs {container_id[:12]}", run,
                             limiter=anyio.CapacityLimiter(1), allowance_s=float("inf"))
        finally:
            cancelled.set()

    # --- act --------------------------------------------------------------------------------

    async def pull(self, image: str,
                   on_progress: Callable[[int, int], None] | None = None,
                   platform: str | None = None) -> None:
        """Pull `image` (of `platform`, when given); `on_progress(downloaded bytes, total
        bytes)` is called in the event
        loop as layers arrive. Pulls have their own limiter: a slow pull never holds up
        the API calls of services whose images are present. A cancelled pull does not hold
        up its caller: the thread stops reading at the next progress message."""
        repository, tag = split_reference(image)
        cancelled = threading.Event()

        def run() -> None:
            layers: dict[str, tuple[int, int]] = {}
            for message in self._client.pull(repository, tag=tag, stream=True, decode=True,
                                             platform=platform):
                if cancelled.is_set():
                    return
                if "error" in message:
                    raise EngineError(f"pull image {image}: {message['error']}")
                detail = message.get("progressDetail") or {}
                if on_progress and message.get("id") and detail.get("total"):
                    layers[message["id"]] = (int(detail.get("current") or 0), int(detail["total"]))
                    anyio.from_thread.run_sync(on_progress, sum(c for c, _ in layers.values()),
                                               sum(t for _, t in layers.values()))

        try:
            await self._call(f"pull image {image}", run, limiter=self._pull_limiter,
                             allowance_s=float("inf"))
        finally:
            cancelled.set()

    async def build(self, config: BuildConfig, digest: str,
                    on_line: Callable[[str], None] | None = None) -> str:
        """Build `config`'s image and tag it, and with its extra tags; its id. The image
        carries `digest` and the project as labels. Pulls its bases only when the plan
        asks (`pull: true`; else a base image is the engine's own). Every line of the
        build's log goes to `on_line` (in the event loop); a failed build raises
        EngineError with its last BUILD_TAIL lines. Builds have their own limiter, and a
        cancelled build does not hold up its caller: the thread stops reading at the next
        line (the engine ends the build when the connection closes)."""
        cancelled = threading.Event()
        tail: collections.deque[str] = collections.deque(maxlen=BUILD_TAIL)
        what = f"build image {config.image}"

        def run() -> str:
            try:
                archive = config.archive()
            except OSError as error:
                raise EngineError(f"{what}: cannot read the build context {config.context}: "
                                  f"{error.strerror or error}") from None
            steps = config.steps
            with archive:
                log = self._client.build(
                    fileobj=archive, custom_context=True, tag=config.image,
                    dockerfile=config.dockerfile, buildargs=dict(config.args),
                    target=config.target, labels=config.image_labels(digest),
                    pull=steps.pull, nocache=steps.no_cache,
                    cache_from=list(steps.cache_from) or None,
                    network_mode=steps.network, shmsize=steps.shm_size,
                    extra_hosts=list(steps.extra_hosts) or None, platform=steps.platform,
                    rm=True, forcerm=True, decode=True, use_config_proxy=False,
                    timeout=BUILD_SILENCE_S)
                image_id = ""
                for message in log:
                    if cancelled.is_set():
                        return image_id
                    for line in str(message.get("stream") or "").splitlines():
                        if not line.strip():
                            continue
                        tail.append(line.rstrip())
                        if on_line is not None:
                            anyio.from_thread.run_sync(on_line, line.rstrip())
                    if "error" in message:
                        lines = "\n".join(f"    | {line}" for line in tail)
                        raise EngineError(f"{what}: {str(message['error']).strip()}"
                                          + (f"; last lines of the build:\n{lines}"
                                             if lines else ""))
                    image_id = str((message.get("aux") or {}).get("ID") or image_id)
                for tag in steps.tags:
                    self._client.tag(image_id, *split_reference(tag))
                return image_id

        try:
            return await self._call(what, run, limiter=self._build_limiter,
                                    allowance_s=float("inf"))
        finally:
            cancelled.set()

    async def create_network(self, config: NetworkConfig, run_id: str) -> str:
        labels = {**config.create_kwargs["labels"], LABEL_RUN: run_id}

        try:
            # This engine (API 1.41) makes a second network of a name unless asked not to.
            raw = await self._call(f"create network {config.name}",
                                   self._client.create_network, config.name,
                                   settle=self._made_by("network", config.name, run_id,
                                                        self._client.inspect_network),
                                   check_duplicate=True,
                                   **{**config.create_kwargs, "labels": labels})
        except SubnetTaken as error:
            raise SubnetTaken(f"{error}{await self._overlapping(config)}") from None
        except NameTaken as error:
            raise NameTaken(await self._taken("network", config.name,
                                              self._client.inspect_network,
                                              labels[LABEL_PROJECT]) or str(error)) from None
        return str(raw["Id"])

    async def _taken(self, kind: str, name: str, inspect: Callable[[str], dict[str, Any]],
                     project: str) -> str | None:
        """Why the name `name` cannot be had: whose the object holding it is."""
        try:
            raw = await self._call(f"inspect {kind} {name}", inspect, name, retry=True)
        except OllamatopoError:
            return None
        return _whose(kind, name, raw, project)

    async def _overlapping(self, config: NetworkConfig) -> str:
        """Which existing network's subnet overlaps the one `config` asks for (for the
        message), or an empty string."""
        pools = (config.create_kwargs.get("ipam") or {}).get("Config") or []
        wanted = []
        for pool in pools:
            with contextlib.suppress(ValueError, TypeError):
                wanted.append(ipaddress.ip_network(pool.get("Subnet"), strict=False))
        if not wanted:
            return ""
        try:
            networks = await self._call("list networks", self._client.networks, retry=True)
        except OllamatopoError:
            return ""
        for network in networks or []:
            for pool in (network.get("IPAM") or {}).get("Config") or []:
                try:
                    subnet = ipaddress.ip_network(pool.get("Subnet"), strict=False)
                except (ValueError, TypeError):
                    continue
                for mine in wanted:
                    if mine.version == subnet.version and mine.overlaps(subnet):
                        return (f"; subnet {mine} overlaps {subnet} of the existing network "
                                f"{network.get('Name')}: choose a free subnet")
        return ""

    def _made_by(self, kind: str, name: str, run_id: str,
                 inspect: Callable[[str], dict[str, Any]]) -> Settle[dict[str, Any]]:
        """For a create that lost its answer: the object named `name`, if this run made
        it after all (then it is not made again)."""

        async def made_already() -> tuple[dict[str, Any]] | None:
            try:
                raw = await self._call(f"inspect {kind} {name}", inspect, name, retry=True)
            except NotFound:
                return None
            return ({"Id": raw["Id"]},) if _labels(raw).get(LABEL_RUN) == run_id else None

        return made_already

    async def remove_network(self, name_or_id: str) -> None:
        """Docker 20.10 may count the endpoints of just removed containers for a while
        (moby/moby#42119, sometimes until dockerd restarts): such a refusal is tried
        again for NETWORK_SETTLE_S before it is raised."""
        settling = tenacity.AsyncRetrying(
            sleep=anyio.sleep, reraise=True, stop=tenacity.stop_after_delay(NETWORK_SETTLE_S),
            wait=tenacity.wait_exponential(multiplier=RETRY_INITIAL_S, max=RETRY_MAX_S),
            retry=tenacity.retry_if_exception_type(StillInUse))
        with contextlib.suppress(NotFound):
            await settling(self._call, f"remove network {name_or_id}",
                           self._client.remove_network, name_or_id, retry=True)

    async def create_volume(self, config: VolumeConfig) -> None:
        """Create the volume. The engine answers a create of an existing name with that
        volume, whoever made it: one that is not the project's is refused, never adopted
        (a `down --volumes` would not remove it, and its data is someone else's)."""
        raw = await self._call(f"create volume {config.name}", self._client.create_volume,
                               config.name, retry=True, **config.create_kwargs)
        project = config.create_kwargs["labels"][LABEL_PROJECT]
        if _labels(raw or {}).get(LABEL_PROJECT) != project:
            raise EngineError(_whose("volume", config.name, raw or {}, project))

    async def remove_volume(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            await self._call(f"remove volume {name}", self._client.remove_volume, name,
                             retry=True)

    async def create_container(self, config: ContainerConfig, run_id: str
                               ) -> CreatedContainer:
        """Create the container on its first network, then connect it to the others (none
        with a network_mode of its own)."""
        kwargs = dict(config.create_kwargs)
        links = kwargs["host_config"].get("Links") or []  # compose gives them each endpoint
        others = config.endpoints[1:]
        if config.endpoints:
            first = config.endpoints[0]
            kwargs["networking_config"] = {
                "EndpointsConfig": {first.network: _endpoint(first, links)}}
        kwargs["labels"] = {**config.labels, LABEL_RUN: run_id}

        try:
            raw = await self._call(f"create container {config.name}",
                                   self._client.create_container, name=config.name,
                                   settle=self._made_by("container", config.name, run_id,
                                                        self._client.inspect_container),
                                   **kwargs)
        except NameTaken as error:
            raise NameTaken(await self._taken("container", config.name,
                                              self._client.inspect_container,
                                              config.labels[LABEL_PROJECT])
                            or str(error)) from None
        except EngineError as error:
            explained = missing_folder(config, str(error))
            if explained is None:
                raise
            raise EngineError(explained) from None
        container_id = str(raw["Id"])
        warnings = tuple(str(warning) for warning in raw.get("Warnings") or ())
        for endpoint in others:

            async def connected(network: str = endpoint.network) -> tuple[None] | None:
                state = await self.inspect(container_id)
                return (None,) if network in state.addresses else None

            await self._call(f"connect {config.name} to {endpoint.network}",
                             self._client.connect_container_to_network, container_id,
                             endpoint.network, aliases=list(endpoint.aliases),
                             ipv4_address=endpoint.ipv4_address,
                             ipv6_address=endpoint.ipv6_address, links=links or None,
                             link_local_ips=list(endpoint.link_local_ips) or None,
                             driver_opt=dict(endpoint.driver_opts) or None,
                             settle=connected)
        return CreatedContainer(container_id, warnings)

    async def start(self, container_id: str) -> None:
        """Start the container. Repeated after a transient error only if the container has
        not started since this call began (it may have started and died already: that is
        for the caller to see, not a reason to start it twice)."""
        began = time.time()

        async def started_already() -> tuple[None] | None:
            raw = await self._call(f"inspect container {container_id[:12]}",
                                   self._client.inspect_container, container_id, retry=True)
            state = raw.get("State") or {}
            since = _timestamp(str(state.get("StartedAt") or ""))
            started = state.get("Running") or (since is not None and since >= began - 1.0)
            return (None,) if started else None

        await self._call(f"start container {container_id[:12]}", self._client.start,
                         container_id, settle=started_already)

    async def set_restart_policy(self, container_id: str, policy: dict[str, Any]) -> None:
        with contextlib.suppress(NotFound):
            await self._call(f"update container {container_id[:12]}",
                             self._client.update_container, container_id,
                             restart_policy=policy, retry=True)

    async def stop(self, container_id: str, timeout: float | None = None) -> None:
        """Graceful stop (SIGTERM), then SIGKILL after `timeout` (the container's own if None)."""
        seconds = None if timeout is None else max(0, round(timeout))
        with contextlib.suppress(NotFound):
            await self._call(f"stop container {container_id[:12]}", self._client.stop,
                             container_id, timeout=seconds, retry=True,
                             allowance_s=STOP_ALLOWANCE_S if seconds is None else seconds)

    async def remove_container(self, container_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self._call(f"remove container {container_id[:12]}",
                             self._client.remove_container, container_id, force=True, v=False,
                             retry=True)

    async def put_file(self, container_id: str, path: str, content: bytes) -> None:
        """Write one file into the container (created or running)."""
        directory, _, name = path.rpartition("/")
        await self._call(f"write {path}", self._client.put_archive, container_id,
                         directory or "/", _tar([(name, content, 0o644, 0, 0)]), retry=True)

    async def copy_files(self, container_id: str, copies: tuple[FileCopy, ...]) -> None:
        """Copy files into a created container, as compose copies its secrets and configs
        before the start: a tar put at / (missing folders are made), the tar's owner kept
        (copyUIDGID, which the SDK's put_archive cannot ask for) only when a uid or gid is
        given, else the engine makes root the owner. All in one tar: each put takes the
        engine 70-100 ms (Docker 20.10), and the tar's 0:0 for the others is root too."""
        if not copies:
            return
        data = _tar((copy.path.lstrip("/"), copy.content, copy.mode, copy.uid or 0,
                     copy.gid or 0) for copy in copies)
        keep = any(copy.uid is not None or copy.gid is not None for copy in copies)
        params = {"path": "/", **({"copyUIDGID": "1"} if keep else {})}

        def put() -> None:
            url = self._client._url("/containers/{0}/archive", container_id)
            self._client._raise_for_status(self._client._put(url, params=params, data=data))

        await self._call(f"copy {len(copies)} files into {container_id[:12]}", put,
                         retry=True)

    async def read_file(self, container_id: str, path: str) -> str | None:
        """One file's text from the container, or None when it is not there."""
        def read() -> str | None:
            stream, _ = self._client.get_archive(container_id, path)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.next()
                handle = tar.extractfile(member) if member is not None else None
                return handle.read().decode(errors="replace") if handle else None

        try:
            return await self._call(f"read {path}", read, retry=True)
        except NotFound:
            return None

    async def exec(self, container_id: str, argv: list[str], *, user: str | None = None,
                   privileged: bool = False, workdir: str | None = None,
                   environment: Mapping[str, str] | None = None) -> tuple[int, str]:
        """Run a command in the container (as `user`, in `workdir`, with `environment`
        added); its exit code and its output."""
        options: dict[str, Any] = {key: value for key, value in (
            ("user", user), ("workdir", workdir),
            ("environment", dict(environment) if environment else None)) if value}
        if privileged:
            options["privileged"] = True

        def run() -> tuple[int, str]:
            exec_id = self._client.exec_create(container_id, argv, **options)["Id"]
            output = self._client.exec_start(exec_id)
            code = self._client.exec_inspect(exec_id).get("ExitCode")
            return (-1 if code is None else int(code)), bytes(output).decode(errors="replace")

        return await self._call(f"exec {argv[0]}", run)

    # --- events -----------------------------------------------------------------------------

    @contextmanager
    def event_stream(self, project: str) -> Iterator[Callable[[], Iterator[ContainerEvent]]]:
        """Subscribe to the project's container events now; iterate them in a thread.

        The subscription is made before the block runs, so no event of containers
        created inside it is missed. Leaving the block closes the stream, which ends
        the iteration in its thread.
        """
        filters = {"type": ["container"], "label": [f"{LABEL_PROJECT}={project}"]}
        try:
            stream = self._client.events(filters=filters, decode=True)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            raise EngineUnreachable(f"subscribe to events: {_reason(error)}") from None
        closed = threading.Event()

        def iterate() -> Iterator[ContainerEvent]:
            try:
                for raw in stream:
                    yield _container_event(raw)
            except (requests.exceptions.RequestException, OSError, AttributeError,
                    ValueError) as error:
                if closed.is_set():
                    return
                raise EngineUnreachable(f"lost the engine's event stream at {self.base_url}: "
                                        f"{_reason(error)}") from None
            if not closed.is_set():  # the engine hung up: it stopped or restarted
                raise EngineUnreachable(f"the engine at {self.base_url} closed its event "
                                        "stream")
        try:
            yield iterate
        finally:
            closed.set()
            stream.close()


def _tar(files: Iterable[tuple[str, bytes, int, int, int]]) -> bytes:
    """A tar of files: (name relative to where it is put, content, mode, uid, gid)."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, content, mode, uid, gid in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, int(time.time())
            info.uid, info.gid = uid, gid
            tar.addfile(info, io.BytesIO(content))
    return archive.getvalue()


def _labels(raw: dict[str, Any]) -> dict[str, str]:
    """The labels of an inspected network (top level) or container (under Config)."""
    return dict(raw.get("Labels") or (raw.get("Config") or {}).get("Labels") or {})


def _whose(kind: str, name: str, raw: dict[str, Any], project: str) -> str:
    """The message for an object that holds a name the project needs, by its owner."""
    owner = _labels(raw).get(LABEL_PROJECT)
    what = f"the {kind} {name}" + (f" ({str(raw['Id'])[:12]})" if raw.get("Id") else "")
    if owner == project:  # the project's lock was not in the way: another host or user
        return (f"{what} was just made by another run of project {project!r} against the "
                "same engine (from another host or user, whose lock this one cannot see): "
                "let that run finish or stop it, then run up again")
    whose = (f"belongs to ollamatopo project {owner!r}" if owner else
             f"was not made by ollamatopo (it has no {LABEL_PROJECT} label)")
    return (f"{what} already exists and {whose}: ollamatopo leaves what is not its project's "
            f"alone; remove or rename that {kind}, or choose another project name")


def _endpoint(endpoint: Endpoint, links: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {"Aliases": list(endpoint.aliases)}
    if links:
        config["Links"] = list(links)
    addresses = {"IPv4Address": endpoint.ipv4_address, "IPv6Address": endpoint.ipv6_address,
                 "LinkLocalIPs": list(endpoint.link_local_ips)}
    if any(addresses.values()):
        config["IPAMConfig"] = {key: value for key, value in addresses.items() if value}
    if endpoint.driver_opts:
        config["DriverOpts"] = dict(endpoint.driver_opts)
    return config


def _reason(error: BaseException) -> str:
    """One line saying why the engine (or the connection to it) failed."""
    return _plain(_engine_words(error))


def _engine_words(error: BaseException) -> str:
    explanation = getattr(error, "explanation", None)
    if explanation:
        text = str(explanation.decode(errors="replace") if isinstance(explanation, bytes)
                   else explanation)
    else:
        text = str(error) or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines) if lines else type(error).__name__


# The engine's words for a host port someone else holds: the userland proxy cannot bind
# it (another process), or the engine has given it to another container.
_PORT_TAKEN = (
    re.compile(r"listen (?:tcp|udp)[46]? (?P<address>\S+): bind: address already in use"),
    re.compile(r"Bind for (?P<address>\S+) failed: port is already allocated"),
)


def _plain(text: str) -> str:
    """The engine's message, with the causes a user can act on said first and plainly."""
    for pattern in _PORT_TAKEN:
        match = pattern.search(text)
        if match:
            return (f"host port {match['address']} is already in use by another process or "
                    "container: free it or publish another port")
    for words, meaning in _PLAIN_CAUSES:
        if words in text:
            return f"{meaning} (the engine: {text})"
    return text


# Engine refusals at start whose words say little to a compose user (Docker 20.10).
_PLAIN_CAUSES = (
    ("could not select device driver", "the engine has no such device: no device driver "
     "answers this service's gpus or deploy.resources.reservations.devices (a GPU needs one, "
     "such as the NVIDIA container toolkit); run it on a host that has the device"),
    ("unable to apply caps", "the engine cannot give this container the capabilities it "
     "asks for (privileged or cap_add): this engine runs without them (rootless, or in a "
     "container)"),
    ("cpu.rt_runtime_us", "the engine gives its containers no real-time CPU time, so "
     "cpu_rt_runtime cannot be granted: start dockerd with --cpu-rt-runtime (microseconds "
     "per period, at least this service's), or remove cpu_rt_period and cpu_rt_runtime"),
    ("_device: no such device", "a blkio_config device is no block device of this host (a throttle "
     "names a disk such as /dev/sda or /dev/vda; `lsblk` lists them): name the disk the "
     "service writes to"),
)


class NameTaken(EngineError):
    """Another object holds the name (the engine's 409 Conflict)."""


class SubnetTaken(EngineError):
    """The network's address pool overlaps one the engine already has."""


class StillInUse(EngineError):
    """The engine still counts endpoints on the network it was asked to remove."""


def _refusal(error: docker.errors.APIError) -> type[EngineError]:
    """The kind of an engine refusal: by its status where the status says it, else by
    the words Docker 20.10 uses (this is the one place that reads them)."""
    if error.status_code == 404:
        return NotFound
    if error.status_code == 409:
        return NameTaken
    words = _engine_words(error).lower()
    if "overlaps" in words:
        return SubnetTaken
    if "active endpoints" in words or "is in use by" in words:  # the swarm's words too
        return StillInUse
    return EngineError


def _transient(error: BaseException) -> bool:
    """Worth repeating: a 5xx that names no lasting cause, or the connection failing."""
    if isinstance(error, docker.errors.APIError):
        status = error.status_code or 0
        words = _engine_words(error).lower()
        return status >= 500 and not any(cause in words for cause in LASTING)
    return isinstance(error, (requests.exceptions.ConnectionError,
                              requests.exceptions.ChunkedEncodingError, ConnectionError))


def _timestamp(text: str) -> float | None:
    """The engine's RFC 3339 time (nanoseconds, Z) as seconds since the epoch; None for
    its zero time or anything unreadable."""
    if not text or text.startswith("0001-"):
        return None
    head, _, fraction = text.rstrip("Z").partition(".")
    try:
        moment = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    digits = "".join(c for c in fraction if c.isdigit())[:6]
    return moment.timestamp() + (int(digits) / 10 ** len(digits) if digits else 0.0)


def _observed_container(raw: dict[str, Any]) -> ObservedContainer:
    labels = raw.get("Labels") or {}
    status = str(raw.get("Status", ""))
    exit_code = 0
    if status.startswith("Exited ("):
        exit_code = int(status[len("Exited ("):].split(")")[0] or 0)
    depends = tuple(filter(None, labels.get(LABEL_DEPENDS, "").split(",")))
    names = raw.get("Names") or ["/"]
    return ObservedContainer(
        id=str(raw["Id"]), name=str(names[0]).lstrip("/"),
        service=labels.get(LABEL_SERVICE, ""), config_hash=labels.get(LABEL_HASH, ""),
        state=str(raw.get("State", "")), exit_code=exit_code, image_id=str(raw.get("ImageID", "")),
        depends_on=depends)


def _observed_network(raw: dict[str, Any]) -> ObservedNetwork:
    labels = raw.get("Labels") or {}
    return ObservedNetwork(id=str(raw["Id"]), name=str(raw["Name"]),
                           key=labels.get(LABEL_NETWORK, ""),
                           config_hash=labels.get(LABEL_HASH, ""),
                           containers=tuple((raw.get("Containers") or {}).keys()))


def _container_state(raw: dict[str, Any]) -> ContainerState:
    state = raw.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    settings = raw.get("NetworkSettings") or {}
    ports: dict[str, list[PublishedPort]] = {}
    for key, bindings in (settings.get("Ports") or {}).items():
        ports[key] = [PublishedPort(b.get("HostIp", ""), int(b["HostPort"]))
                      for b in bindings or [] if b.get("HostPort")]
    addresses = {name: str(net.get("IPAddress", ""))
                 for name, net in (settings.get("Networks") or {}).items()}
    return ContainerState(
        id=str(raw["Id"]), status=str(state.get("Status", "")),
        exit_code=int(state.get("ExitCode") or 0), oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""), health=health, ports=ports, addresses=addresses)


def _container_event(raw: dict[str, Any]) -> ContainerEvent:
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    code = attributes.get("exitCode")
    return ContainerEvent(
        container_id=str(actor.get("ID") or raw.get("id") or ""),
        action=str(raw.get("Action") or raw.get("status") or ""),
        exit_code=int(code) if code is not None and str(code).isdigit() else None,
        service=attributes.get(LABEL_SERVICE))
