"""Readiness probes, run by the orchestrator itself: the only module that imports httpx.

Each `ReadinessProbe` makes one check and raises `ProbeFailed` with the reason when
it does not pass. `wait_until_ready` repeats a check with tenacity's jittered
exponential backoff (tens of milliseconds at first, capped low) until it passes or
the service's deadline expires; Docker's HEALTHCHECK interval never gates it. When the
last run says how long the service took (`expected_s`), checks come every DENSE_S
around that moment (`ProbeCadence`): detection there takes tens of milliseconds instead
of up to the cap, for a dozen more checks.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import anyio
import tenacity

from ollamatopo._errors import EngineError, ProbeFailed
from ollamatopo.engine._docker import ContainerState, Engine
from ollamatopo.plan._model import ProbeKind, ReadySpec

if TYPE_CHECKING:
    import httpx

ATTEMPT_TIMEOUT_S = 2.0
# The window of dense checks around the expected readiness. The last run's figure is
# late by that run's detection (up to the cap) and moves by a tenth or two between runs.
DENSE_S = 0.02
EARLY_S = 0.3
LATE_S = 0.3
# Before that window, a check every SPARSE_S: an exec check costs the engine 40-60 ms of
# work that slows the starts and checks on the critical path. (Overlapping checks inside
# the window, to look more often than one exec allows, slowed them too: tried, dropped.)
SPARSE_S = 0.5
LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


class ReadinessProbe(Protocol):
    """One readiness check of one container."""

    @property
    def description(self) -> str: ...

    async def check(self) -> None:
        """Return when ready; raise ProbeFailed with the reason otherwise."""


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.05
    cap_s: float = 0.15


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def probe_endpoint(state: ContainerState, port: int, first_network: str) -> Endpoint:
    """Where the host reaches a container port: its published binding (loopback when it is
    published on all addresses), else the container's address on its first network."""
    bindings = state.ports.get(f"{port}/tcp") or []
    if bindings:
        binding = bindings[0]
        return Endpoint(LOOPBACK.get(binding.host_ip, binding.host_ip), binding.host_port)
    if first_network == "host":  # network_mode: host, the host's own ports
        return Endpoint("127.0.0.1", port)
    address = state.addresses.get(first_network) or next(
        (ip for ip in state.addresses.values() if ip), "")
    if not address:
        raise ProbeFailed(f"port {port} is not published and the container has no address")
    return Endpoint(address, port)


class HttpClient:
    """A run's client for HTTP probes: no proxies from the environment, no redirects, no
    kept-alive connections. httpx is imported at the first GET (about 45 ms of imports),
    when the engine is already starting the first containers, instead of before the
    first create."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    async def get_status(self, url: str, timeout_s: float) -> int:
        """The status of `GET url`; ProbeFailed with the reason when no answer came."""
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False,
                                             limits=httpx.Limits(max_keepalive_connections=0))
        try:
            response = await self._client.get(url, timeout=timeout_s)
        except httpx.HTTPError as error:
            raise ProbeFailed(f"GET {url}: {type(error).__name__} {error}".strip()) from None
        return response.status_code

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class HttpProbe:
    def __init__(self, client: HttpClient, url: str, status: int | None) -> None:
        self._client, self._url, self._status = client, url, status

    @property
    def description(self) -> str:
        return f"GET {self._url}"

    async def check(self) -> None:
        status = await self._client.get_status(self._url, ATTEMPT_TIMEOUT_S)
        ok = status == self._status if self._status else 200 <= status < 400
        if not ok:
            wanted = self._status or "2xx/3xx"
            raise ProbeFailed(f"GET {self._url}: status {status}, want {wanted}")


class TcpProbe:
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    @property
    def description(self) -> str:
        return f"TCP {self._endpoint}"

    async def check(self) -> None:
        try:
            with anyio.fail_after(ATTEMPT_TIMEOUT_S):
                stream = await anyio.connect_tcp(self._endpoint.host, self._endpoint.port)
        except (OSError, TimeoutError) as error:
            raise ProbeFailed(f"TCP {self._endpoint}: {error or 'timed out'}") from None
        await stream.aclose()


class ExecProbe:
    def __init__(self, engine: Engine, container_id: str, argv: list[str]) -> None:
        self._engine, self._id, self._argv = engine, container_id, argv

    @property
    def description(self) -> str:
        return "exec " + " ".join(self._argv)

    async def check(self) -> None:
        try:
            code, output = await self._engine.exec(self._id, self._argv)
        except EngineError as error:
            raise ProbeFailed(f"{self.description}: {error}") from None
        if code != 0:
            last = output.strip().splitlines()[-1:] or [""]
            raise ProbeFailed(f"{self.description}: exit {code} {last[0]}".strip())


class DockerHealthProbe:
    def __init__(self, engine: Engine, container_id: str) -> None:
        self._engine, self._id = engine, container_id

    @property
    def description(self) -> str:
        return "docker HEALTHCHECK"

    async def check(self) -> None:
        state = await self._engine.inspect(self._id)
        if state.health is None:
            raise ProbeFailed("the image has no HEALTHCHECK: choose another ready check")
        if state.health != "healthy":
            raise ProbeFailed(f"docker health is {state.health}")


class LogProbe:
    def __init__(self, engine: Engine, container_id: str, pattern: str) -> None:
        self._engine, self._id = engine, container_id
        self._pattern = re.compile(pattern)

    @property
    def description(self) -> str:
        return f"log /{self._pattern.pattern}/"

    async def check(self) -> None:
        output = await self._engine.logs(self._id)
        if not self._pattern.search(output):
            raise ProbeFailed(f"no log line matches /{self._pattern.pattern}/ yet")


class StartedProbe:
    """`none: true`: ready as soon as the container runs."""

    description = "running"

    async def check(self) -> None:
        return None


def build_probe(spec: ReadySpec, *, engine: Engine, http: HttpClient,
                container_id: str, state: ContainerState, first_network: str) -> ReadinessProbe:
    kind = spec.kind
    if kind is ProbeKind.HTTP and spec.http is not None:
        endpoint = probe_endpoint(state, spec.http.port, first_network)
        url = f"{spec.http.scheme}://{endpoint}{spec.http.path}"
        return HttpProbe(http, url, spec.http.status)
    if kind is ProbeKind.TCP and spec.tcp is not None:
        return TcpProbe(probe_endpoint(state, spec.tcp.port, first_network))
    if kind is ProbeKind.EXEC and spec.exec_ is not None:
        return ExecProbe(engine, container_id, list(spec.exec_))
    if kind is ProbeKind.DOCKER:
        return DockerHealthProbe(engine, container_id)
    if kind is ProbeKind.LOG and spec.log is not None:
        return LogProbe(engine, container_id, spec.log)
    return StartedProbe()


def http_client() -> HttpClient:
    """One client for a run's HTTP probes (an async context manager)."""
    return HttpClient()


class ProbeCadence:
    """The wait before the next check: jittered exponential backoff, and, with an
    expected readiness (seconds after the first check), at most DENSE_S inside the
    window around it and never past the window's opening."""

    def __init__(self, backoff: Backoff, expected_s: float | None = None,
                 clock: Callable[[], float] = anyio.current_time) -> None:
        self._backoff = tenacity.wait_random_exponential(
            multiplier=backoff.initial_s, max=backoff.cap_s, min=backoff.initial_s / 5)
        self._clock = clock
        self._began = clock()
        self._window = None if expected_s is None else (max(0.0, expected_s - EARLY_S),
                                                        expected_s + LATE_S)

    def __call__(self, state: tenacity.RetryCallState) -> float:
        wait = float(self._backoff(state))
        if self._window is None:
            return wait
        now = self._clock() - self._began
        opens, closes = self._window
        if now < opens:
            return min(max(wait, SPARSE_S), opens - now)
        if now < closes:
            return min(wait, DENSE_S)
        return wait


async def wait_until_ready(probe: ReadinessProbe, deadline_s: float, backoff: Backoff,
                           on_attempt: Callable[[int, str | None], Awaitable[None] | None]
                           | None = None, expected_s: float | None = None) -> int:
    """Check until the probe passes (returns the number of attempts) or the deadline expires
    (raises ProbeFailed with the last reason); `expected_s`: see ProbeCadence."""
    attempts = 0
    last_error = "no check completed"

    async def attempt() -> None:
        nonlocal attempts, last_error
        attempts += 1
        try:
            await probe.check()
        except ProbeFailed as error:
            last_error = str(error)
            if on_attempt is not None:
                result = on_attempt(attempts, last_error)
                if result is not None:
                    await result
            raise

    retrying = tenacity.AsyncRetrying(
        sleep=anyio.sleep,
        wait=ProbeCadence(backoff, expected_s),
        retry=tenacity.retry_if_exception_type(ProbeFailed),
        reraise=True,
    )
    try:
        with anyio.fail_after(deadline_s):
            await retrying(attempt)
    except TimeoutError:
        raise ProbeFailed(f"not ready after {deadline_s:g}s ({attempts} checks); last check: "
                          f"{last_error}") from None
    return attempts
