"""Readiness probes without a container: HTTP through `httpx.MockTransport`, TCP against a
socket this test listens on, the engine-backed probes through a fake engine, and
`wait_until_ready`, `build_probe` and `probe_endpoint`. (ProbeCadence: test_probe_cadence.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute

from ollamatopo._errors import EngineError, ProbeFailed
from ollamatopo.engine._docker import ContainerState, PublishedPort
from ollamatopo.engine._probes import (
    Backoff,
    DockerHealthProbe,
    Endpoint,
    ExecProbe,
    HttpClient,
    HttpProbe,
    LogProbe,
    TcpProbe,
    build_probe,
    probe_endpoint,
    wait_until_ready,
)
from ollamatopo.plan._model import ReadySpec

pytestmark = pytest.mark.anyio

FAST = Backoff(initial_s=0.001, cap_s=0.005)
URL = "http://127.0.0.1:8080/health"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- HTTP through a mock transport ------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


class Transport:
    """What the HTTP probes' client reaches instead of the network: `handler` answers, and
    every request and every client made are kept."""

    def __init__(self) -> None:
        self.handler: Handler = lambda request: httpx.Response(200)
        self.requests: list[httpx.Request] = []
        self.clients: list[httpx.AsyncClient] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


@pytest.fixture
def transport(monkeypatch: pytest.MonkeyPatch) -> Transport:
    """`HttpClient` makes its own `httpx.AsyncClient` at the first GET and takes no
    transport: the client it makes (with its own options) gets a mock transport added."""
    fake = Transport()
    real = httpx.AsyncClient

    def client(**options: Any) -> httpx.AsyncClient:
        made = real(transport=httpx.MockTransport(fake.answer), **options)
        fake.clients.append(made)
        return made

    monkeypatch.setattr(httpx, "AsyncClient", client)
    return fake


@pytest.fixture
async def http(transport: Transport) -> AsyncIterator[HttpClient]:
    async with HttpClient() as client:
        yield client


def answer_status(status: int, **headers: str) -> Handler:
    return lambda request: httpx.Response(status, headers=headers)


def raising(error: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


@pytest.mark.parametrize("status", [200, 204, 301, 302, 304, 399])
async def test_any_2xx_or_3xx_is_ready_by_default(transport: Transport, http: HttpClient,
                                                  status: int) -> None:
    transport.handler = answer_status(status)
    await HttpProbe(http, URL, None).check()
    assert [str(r.url) for r in transport.requests] == [URL]
    assert transport.requests[0].method == "GET"


@pytest.mark.parametrize("status", [100, 400, 401, 404, 500, 503])
async def test_any_other_status_is_not_ready_by_default(transport: Transport, http: HttpClient,
                                                        status: int) -> None:
    transport.handler = answer_status(status)
    with pytest.raises(ProbeFailed) as failed:
        await HttpProbe(http, URL, None).check()
    assert str(failed.value) == f"GET {URL}: status {status}, want 2xx/3xx"


async def test_an_exact_status_is_the_only_one_accepted(transport: Transport,
                                                        http: HttpClient) -> None:
    probe = HttpProbe(http, URL, 204)
    transport.handler = answer_status(204)
    await probe.check()
    transport.handler = answer_status(200)
    with pytest.raises(ProbeFailed, match=r"status 200, want 204$"):
        await probe.check()


async def test_an_exact_status_may_be_an_error_status(transport: Transport,
                                                      http: HttpClient) -> None:
    transport.handler = answer_status(401)
    await HttpProbe(http, URL, 401).check()


async def test_a_redirect_is_the_answer_and_is_not_followed(transport: Transport,
                                                            http: HttpClient) -> None:
    transport.handler = answer_status(302, location="http://127.0.0.1:8080/login")
    await HttpProbe(http, URL, None).check()
    assert len(transport.requests) == 1


@pytest.mark.parametrize(("error", "kind"), [
    (httpx.ConnectError("connection refused"), "ConnectError"),
    (httpx.ReadTimeout("timed out"), "ReadTimeout"),
    (httpx.RemoteProtocolError("server disconnected"), "RemoteProtocolError"),
])
async def test_a_request_that_gets_no_answer_fails_naming_the_url(
        transport: Transport, http: HttpClient, error: Exception, kind: str) -> None:
    transport.handler = raising(error)
    with pytest.raises(ProbeFailed) as failed:
        await HttpProbe(http, URL, None).check()
    assert str(failed.value) == f"GET {URL}: {kind} {error}"


async def test_the_client_ignores_proxies_from_the_environment(transport: Transport,
                                                              http: HttpClient) -> None:
    """A probe goes to the container itself, never through HTTP_PROXY. (httpx ignores the
    environment anyway once a transport is given, so the option itself is what is read.)"""
    await HttpProbe(http, URL, None).check()
    assert [client.trust_env for client in transport.clients] == [False]


async def test_the_client_is_made_once_for_many_checks_and_closed_on_exit(
        transport: Transport) -> None:
    async with HttpClient() as http:
        assert transport.clients == []  # nothing made before the first GET
        for _ in range(3):
            await HttpProbe(http, URL, None).check()
    assert len(transport.requests) == 3
    assert len(transport.clients) == 1
    assert transport.clients[0].is_closed


def test_the_description_of_an_http_probe_is_its_request() -> None:
    assert HttpProbe(HttpClient(), URL, None).description == f"GET {URL}"


# --- TCP against a real socket ----------------------------------------------------------------


@pytest.fixture
async def listening_port() -> AsyncIterator[int]:
    """A port on 127.0.0.1 that accepts connections (and closes them) while the test runs."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def close(stream: anyio.abc.SocketStream) -> None:
        await stream.aclose()

    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, close)
        yield listener.extra(SocketAttribute.local_port)
        group.cancel_scope.cancel()


@pytest.fixture
async def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (it did a moment ago)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    await listener.aclose()
    return port


async def test_tcp_is_ready_when_the_port_accepts_a_connection(listening_port: int) -> None:
    probe = TcpProbe(Endpoint("127.0.0.1", listening_port))
    with anyio.fail_after(3):
        await probe.check()
    assert probe.description == f"TCP 127.0.0.1:{listening_port}"


async def test_tcp_is_not_ready_when_the_port_is_closed(closed_port: int) -> None:
    with anyio.fail_after(3), pytest.raises(ProbeFailed) as failed:
        await TcpProbe(Endpoint("127.0.0.1", closed_port)).check()
    assert str(failed.value).startswith(f"TCP 127.0.0.1:{closed_port}: ")
    assert len(str(failed.value)) > len(f"TCP 127.0.0.1:{closed_port}: ")  # with the reason


def test_an_ipv6_endpoint_is_bracketed() -> None:
    assert str(Endpoint("::1", 5432)) == "[::1]:5432"
    assert str(Endpoint("10.0.0.2", 5432)) == "10.0.0.2:5432"


# --- probes that ask the engine -------------------------------------------------------------


def state(status: str = "running", health: str | None = None,
          ports: dict[str, list[PublishedPort]] | None = None,
          addresses: dict[str, str] | None = None) -> ContainerState:
    return ContainerState("c1", status, 0, False, "", health, ports or {}, addresses or {})


class FakeEngine:
    """The calls probes make; each answer is set by the test."""

    def __init__(self) -> None:
        self.exec_result: tuple[int, str] | EngineError = (0, "")
        self.health: str | None = None
        self.log_text = ""
        self.calls: list[tuple[str, str]] = []

    async def exec(self, container_id: str, argv: list[str]) -> tuple[int, str]:
        self.calls.append(("exec", container_id))
        if isinstance(self.exec_result, EngineError):
            raise self.exec_result
        return self.exec_result

    async def inspect(self, container_id: str) -> ContainerState:
        self.calls.append(("inspect", container_id))
        return state(health=self.health)

    async def logs(self, container_id: str, tail: int | str = "all") -> str:
        self.calls.append(("logs", container_id))
        return self.log_text


async def test_exec_is_ready_on_exit_code_zero_and_names_the_last_output_line_otherwise(
        ) -> None:
    engine = FakeEngine()
    probe = ExecProbe(engine, "c1", ["pg_isready", "-U", "app"])  # type: ignore[arg-type]
    await probe.check()
    engine.exec_result = (2, "starting\nno response\n")
    with pytest.raises(ProbeFailed) as failed:
        await probe.check()
    assert str(failed.value) == "exec pg_isready -U app: exit 2 no response"
    assert engine.calls == [("exec", "c1"), ("exec", "c1")]


async def test_exec_refused_by_the_engine_is_a_failed_check() -> None:
    engine = FakeEngine()
    engine.exec_result = EngineError("container is not running")
    with pytest.raises(ProbeFailed, match=r"^exec true: container is not running$"):
        await ExecProbe(engine, "c1", ["true"]).check()  # type: ignore[arg-type]


@pytest.mark.parametrize(("health", "error"), [
    (None, "the image has no HEALTHCHECK: choose another ready check"),
    ("starting", "docker health is starting"),
    ("unhealthy", "docker health is unhealthy"),
    ("healthy", None),
])
async def test_docker_health_is_ready_only_when_healthy(health: str | None,
                                                        error: str | None) -> None:
    engine = FakeEngine()
    engine.health = health
    probe = DockerHealthProbe(engine, "c1")  # type: ignore[arg-type]
    if error is None:
        await probe.check()
    else:
        with pytest.raises(ProbeFailed) as failed:
            await probe.check()
        assert str(failed.value) == error


async def test_a_log_probe_waits_for_a_matching_line() -> None:
    engine = FakeEngine()
    probe = LogProbe(engine, "c1", r"listening on port \d+")  # type: ignore[arg-type]
    engine.log_text = "booting\nloading model\n"
    with pytest.raises(ProbeFailed, match="no log line matches"):
        await probe.check()
    engine.log_text += "listening on port 11434\n"
    await probe.check()


# --- wait_until_ready --------------------------------------------------------------------------


class Flaky:
    """Fails `failures` times (or for ever: None), then passes; counts its checks."""

    description = "flaky"

    def __init__(self, failures: int | None, reason: str = "status 503") -> None:
        self.failures, self.reason, self.checks = failures, reason, 0

    async def check(self) -> None:
        self.checks += 1
        if self.failures is None or self.checks <= self.failures:
            raise ProbeFailed(f"{self.reason} (check {self.checks})")


async def test_it_passes_after_some_failed_checks_and_counts_them() -> None:
    probe = Flaky(4)
    attempts: list[tuple[int, str | None]] = []
    with anyio.fail_after(5):
        result = await wait_until_ready(probe, 5.0, FAST,
                                        lambda n, error: attempts.append((n, error)))
    assert result == 5 == probe.checks
    assert attempts == [(n, f"status 503 (check {n})") for n in range(1, 5)]


async def test_a_first_check_that_passes_is_one_attempt() -> None:
    assert await wait_until_ready(Flaky(0), 5.0, FAST) == 1


async def test_an_async_attempt_callback_is_awaited() -> None:
    seen: list[int] = []

    async def on_attempt(attempt: int, error: str | None) -> None:
        await anyio.sleep(0)
        seen.append(attempt)

    with anyio.fail_after(5):
        await wait_until_ready(Flaky(2), 5.0, FAST, on_attempt)
    assert seen == [1, 2]


async def test_the_deadline_fails_it_with_the_last_reason_and_the_count_of_checks() -> None:
    probe = Flaky(None)
    with anyio.fail_after(5), pytest.raises(ProbeFailed) as failed:
        await wait_until_ready(probe, 0.1, FAST)
    assert probe.checks > 1
    # Flaky's check never awaits: the deadline always falls in the wait after a check.
    assert str(failed.value) == (f"not ready after 0.1s ({probe.checks} checks); last check: "
                                 f"status 503 (check {probe.checks})")


async def test_a_check_that_hangs_is_cut_by_the_deadline() -> None:
    class Hanging:
        description = "hangs"

        async def check(self) -> None:
            await anyio.sleep_forever()

    with anyio.fail_after(5), pytest.raises(ProbeFailed) as failed:
        await wait_until_ready(Hanging(), 0.05, FAST)
    assert str(failed.value) == ("not ready after 0.05s (1 checks); last check: "
                                 "no check completed")


async def test_an_error_that_is_not_a_failed_check_is_not_retried() -> None:
    class Broken:
        description = "broken"
        checks = 0

        async def check(self) -> None:
            self.checks += 1
            raise EngineError("the engine went away")

    probe = Broken()
    with pytest.raises(EngineError):
        await wait_until_ready(probe, 5.0, FAST)
    assert probe.checks == 1


# --- build_probe and probe_endpoint -------------------------------------------------------------


PUBLISHED = state(ports={"8080/tcp": [PublishedPort("0.0.0.0", 32768)],
                         "5432/tcp": [PublishedPort("127.0.0.1", 15432)]},
                  addresses={"shop_back": "172.20.0.5"})


def built(ready: dict[str, Any], container: ContainerState = PUBLISHED) -> Any:
    return build_probe(ReadySpec.model_validate(ready), engine=FakeEngine(),  # type: ignore[arg-type]
                       http=HttpClient(), container_id="c1", state=container,
                       first_network="shop_back")


@pytest.mark.parametrize(("ready", "kind", "description"), [
    ({"http": {"port": 8080, "path": "/health"}}, HttpProbe,
     "GET http://127.0.0.1:32768/health"),
    ({"http": {"port": 8080, "scheme": "https"}}, HttpProbe, "GET https://127.0.0.1:32768/"),
    ({"http": {"port": 9000, "path": "/ready"}}, HttpProbe, "GET http://172.20.0.5:9000/ready"),
    ({"tcp": {"port": 5432}}, TcpProbe, "TCP 127.0.0.1:15432"),
    ({"tcp": {"port": 6379}}, TcpProbe, "TCP 172.20.0.5:6379"),
    ({"exec": ["pg_isready", "-q"]}, ExecProbe, "exec pg_isready -q"),
    ({"docker": "healthy"}, DockerHealthProbe, "docker HEALTHCHECK"),
    ({"log": "ready to accept"}, LogProbe, "log /ready to accept/"),
    ({"none": True}, None, "running"),
])
def test_build_probe_picks_the_probe_of_the_ready_kind(ready: dict[str, Any], kind: type | None,
                                                       description: str) -> None:
    probe = built(ready)
    if kind is not None:
        assert type(probe) is kind
    assert probe.description == description


async def test_a_none_probe_is_ready_at_once() -> None:
    await built({"none": True}).check()


def test_an_http_probe_of_a_port_that_cannot_be_reached_is_refused_when_built() -> None:
    with pytest.raises(ProbeFailed, match="port 8080 is not published and the container has no "
                                          "address"):
        built({"http": {"port": 8080}}, state())


@pytest.mark.parametrize(("host_ip", "host"), [
    ("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), ("::", "::1"), ("127.0.0.1", "127.0.0.1"),
    ("192.168.1.20", "192.168.1.20"),
])
def test_a_published_port_is_reached_on_its_binding_with_all_addresses_as_loopback(
        host_ip: str, host: str) -> None:
    container = state(ports={"80/tcp": [PublishedPort(host_ip, 18080),
                                        PublishedPort("10.9.9.9", 28080)]},
                      addresses={"shop_front": "172.21.0.3"})
    assert probe_endpoint(container, 80, "shop_front") == Endpoint(host, 18080)


def test_an_unpublished_port_is_reached_on_the_first_networks_address() -> None:
    container = state(ports={"443/tcp": [PublishedPort("0.0.0.0", 8443)]},
                      addresses={"shop_back": "172.20.0.5", "shop_front": "172.21.0.3"})
    assert probe_endpoint(container, 80, "shop_front") == Endpoint("172.21.0.3", 80)
    assert probe_endpoint(container, 80, "shop_back") == Endpoint("172.20.0.5", 80)


def test_without_an_address_on_the_first_network_any_other_address_is_used() -> None:
    container = state(addresses={"shop_back": "", "shop_front": "172.21.0.3"})
    assert probe_endpoint(container, 80, "shop_back") == Endpoint("172.21.0.3", 80)
