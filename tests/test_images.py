"""The offline service images of images/build.py, checked against the real Docker engine.

The images are built through images/build.py and cached by recipe hash: the first run
makes the Debian base with mmdebstrap (about a minute) and the service images on it;
later runs reuse them. Everything a test creates carries the label ollamatopo.test=images
(plus this run's id) and is removed by label afterwards, also when a test fails. Ports are
published on 127.0.0.1 only; all other traffic goes to containers made here.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker.errors
import pytest

SERVICES = ("debian", "postgres", "redis", "nginx", "prometheus", "node", "standin")
PASSWORD = "s3cret-pw"
# never through a proxy: the only HTTP here goes to 127.0.0.1
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def get(port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path: (status, body); status 0 when nothing answers."""
    try:
        with OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (OSError, http.client.HTTPException):
        return 0, ""


class Lab:
    """One network for this module's containers, and what to remove afterwards."""

    def __init__(self, client: Any, images: dict[str, str]) -> None:
        self.client, self.images = client, images
        self.run_id = uuid.uuid4().hex[:8]
        self.labels = {"ollamatopo.test": "images", "ollamatopo.test-run": self.run_id}
        self.network = client.networks.create(f"ot-images-{self.run_id}", driver="bridge",
                                              labels=self.labels)

    def name(self, role: str) -> str:
        return f"ot-images-{self.run_id}-{role}"

    def start(self, image: str, role: str, ports: tuple[str, ...] = (), **options: Any) -> Any:
        """Run image `image` (a key of build.IMAGES) detached on the lab network, named
        after `role` (its host name there); `ports` are published on 127.0.0.1."""
        return self.client.containers.run(
            self.images[image], name=self.name(role), detach=True, labels=self.labels,
            network=self.network.name, ports={port: ("127.0.0.1", None) for port in ports},
            **options)

    def once(self, image: str, command: list[str], **options: Any) -> str:
        """Run a command to its end in a throwaway container on the lab network."""
        output = self.client.containers.run(
            self.images[image], command, remove=True, labels=self.labels,
            network=self.network.name, **options)
        return bytes(output).decode()

    def volume(self, role: str) -> str:
        return str(self.client.volumes.create(self.name(role), labels=self.labels).name)

    def clean(self) -> None:
        wanted = {"label": [f"{key}={value}" for key, value in self.labels.items()]}
        for container in self.client.containers.list(all=True, filters=wanted):
            container.remove(force=True)
        for network in self.client.networks.list(filters=wanted):
            network.remove()
        for volume in self.client.volumes.list(filters=wanted):
            volume.remove(force=True)


def host_port(container: Any, port: str) -> int:
    container.reload()
    return int(container.ports[port][0]["HostPort"])


def run_ok(container: Any, command: list[str]) -> str:
    code, output = container.exec_run(command)
    text = bytes(output).decode()
    assert code == 0, f"{command} exited {code}: {text}"
    return text


@pytest.fixture(scope="module")
def images(docker_client: Any) -> dict[str, str]:
    from build import ensure_image  # images/build.py

    return {name: ensure_image(name, docker_client) for name in SERVICES}


@pytest.fixture(scope="module")
def lab(docker_client: Any, images: dict[str, str]) -> Iterator[Lab]:
    made = Lab(docker_client, images)
    try:
        yield made
    finally:
        made.clean()


def postgres_ready(container: Any) -> bool:
    container.reload()
    if container.status == "exited":
        pytest.fail(f"postgres exited: {container.logs().decode()[-2000:]}")
    code, _ = container.exec_run(["pg_isready", "-U", "ollama", "-h", "127.0.0.1"])
    return bool(code == 0)


def test_images_are_cached_by_recipe_and_the_base_has_the_packages(
        docker_client: Any, images: dict[str, str]) -> None:
    from build import IMAGE_LABEL, RECIPE_LABEL, ensure_image, recipe_hash

    ids = {name: docker_client.images.get(ref).id for name, ref in images.items()}
    started = time.monotonic()
    for name in SERVICES:
        assert ensure_image(name, docker_client) == images[name]
    assert time.monotonic() - started < 15, "cached images were rebuilt"
    assert {name: docker_client.images.get(ref).id for name, ref in images.items()} == ids

    base = docker_client.images.get(images["debian"])
    assert base.labels[IMAGE_LABEL] == "debian"
    assert base.labels[RECIPE_LABEL] == recipe_hash("debian")
    # a service image's recipe covers the base it stands on
    assert docker_client.images.get(images["node"]).labels[RECIPE_LABEL] == recipe_hash(
        "node", base.id)
    found = docker_client.containers.run(
        base.id, ["sh", "-c", "for b in psql redis-server redis-cli nginx prometheus python3 "
                  "setpriv; do command -v $b; done; ls /usr/lib/postgresql"],
        remove=True, labels={"ollamatopo.test": "images"}, network_mode="none").decode()
    assert found.split() == ["/usr/bin/psql", "/usr/bin/redis-server", "/usr/bin/redis-cli",
                             "/usr/sbin/nginx", "/usr/bin/prometheus", "/usr/bin/python3",
                             "/usr/bin/setpriv", "15"]


def test_postgres_takes_password_logins_and_keeps_data_across_containers(lab: Lab) -> None:
    volume = lab.volume("pgdata")  # a fresh volume: empty and owned by root
    options = {"environment": {"POSTGRES_PASSWORD": PASSWORD},
               "volumes": {volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}}}
    first = lab.start("postgres", "pg", **options)
    until(lambda: postgres_ready(first), 60, "postgres to accept connections")
    run_ok(first, ["pg_isready", "-U", "ollama"])  # on PATH, over the local socket
    assert run_ok(first, ["ps", "-o", "user=", "-p", "1"]).strip() == "postgres"

    def psql(sql: str, password: str = PASSWORD) -> str:
        return lab.once("postgres", ["psql", "-h", lab.name("pg"), "-U", "ollama", "-d",
                                     "ollama", "-v", "ON_ERROR_STOP=1", "-tAc", sql],
                        environment={"PGPASSWORD": password})

    psql("CREATE TABLE kept (word text); INSERT INTO kept VALUES ('survives')")
    with pytest.raises(docker.errors.ContainerError, match="password authentication failed"):
        psql("SELECT 1", password="wrong")

    started = time.monotonic()
    first.stop(timeout=20)
    assert time.monotonic() - started < 10
    first.reload()
    assert first.attrs["State"]["ExitCode"] == 0
    assert "database system is shut down" in first.logs().decode()
    first.remove()

    second = lab.start("postgres", "pg", **options)
    until(lambda: postgres_ready(second), 60, "the recreated postgres")
    assert psql("SELECT word FROM kept").strip() == "survives"
    assert "initialising" not in second.logs().decode()


def test_redis_answers_ping(lab: Lab) -> None:
    redis = lab.start("redis", "redis", ports=("6379/tcp",))
    until(lambda: redis.exec_run(["redis-cli", "ping"])[1].strip() == b"PONG", 30,
          "redis-cli ping")
    # from the host, through the port published on loopback
    with socket.create_connection(("127.0.0.1", host_port(redis, "6379/tcp")), 3) as conn:
        conn.sendall(b"PING\r\n")
        assert conn.recv(16).startswith(b"+PONG")
    # from another container (protected mode is off), and the settings of the command
    assert lab.once("redis", ["redis-cli", "-h", lab.name("redis"), "set", "k", "v"]).strip() \
        == "OK"
    settings = run_ok(redis, ["redis-cli", "config", "get", "*"]).split("\n")
    pairs = dict(zip(settings[0::2], settings[1::2], strict=False))
    assert (pairs["appendonly"], pairs["maxmemory"], pairs["maxmemory-policy"], pairs["dir"]) \
        == ("yes", str(512 * 1024 * 1024), "allkeys-lru", "/data")
    assert run_ok(redis, ["ps", "-o", "user=", "-p", "1"]).strip() == "redis"


def test_nginx_answers_health_and_reloads_a_replaced_config(lab: Lab) -> None:
    nginx = lab.start("nginx", "nginx", ports=("80/tcp",))
    port = host_port(nginx, "80/tcp")
    assert until(lambda: get(port, "/health")[0] == 200, 20, "nginx /health")
    assert "nginx: master process" in run_ok(nginx, ["ps", "-o", "args=", "-p", "1"])

    config = run_ok(nginx, ["cat", "/etc/nginx/nginx.conf"]).replace(
        "location = /health {", 'location = /reloaded { return 200 "yes\\n"; }\n'
        "        location = /health {")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        entry = tarfile.TarInfo("nginx.conf")
        entry.size, entry.mode = len(config.encode()), 0o644
        tar.addfile(entry, io.BytesIO(config.encode()))
    assert nginx.put_archive("/etc/nginx", archive.getvalue())
    assert get(port, "/reloaded") != (200, "yes\n")
    run_ok(nginx, ["nginx", "-s", "reload"])
    assert until(lambda: get(port, "/reloaded") == (200, "yes\n"), 10, "the reloaded config")
    assert get(port, "/health")[0] == 200


def test_prometheus_becomes_ready(lab: Lab) -> None:
    volume = lab.volume("promdata")
    prometheus = lab.start("prometheus", "prometheus", ports=("9090/tcp",),
                           volumes={volume: {"bind": "/prometheus", "mode": "rw"}})
    port = host_port(prometheus, "9090/tcp")
    until(lambda: get(port, "/-/ready")[0] == 200, 30, "prometheus /-/ready")
    status, body = get(port, "/api/v1/status/config")
    assert status == 200
    assert "localhost:9090" in json.loads(body)["data"]["yaml"]


def test_node_health_follows_postgres_and_redis(lab: Lab) -> None:
    node = lab.start("node", "node", ports=("8080/tcp",), environment={
        "NODE_ID": "node-7", "NODE_ROLE": "leader",
        "POSTGRES_HOST": lab.name("node-pg"), "REDIS_HOST": lab.name("node-redis")})
    port = host_port(node, "8080/tcp")

    def answered() -> tuple[int, str] | None:
        answer = get(port, "/health")
        return answer if answer[0] else None

    status, body = until(answered, 20, "the node to answer")
    assert status == 503
    assert set(json.loads(body)["reason"]) == {"postgres", "redis"}

    lab.start("postgres", "node-pg", environment={"POSTGRES_PASSWORD": PASSWORD})
    lab.start("redis", "node-redis")
    until(lambda: get(port, "/health")[0] == 200, 60, "the node's /health to turn 200")

    assert json.loads(get(port, "/v1/models")[1]) == {
        "node_id": "node-7", "role": "leader", "path": "/v1/models"}
    status, metrics = get(port, "/metrics")
    assert status == 200
    assert 'ollama_node_requests_total{path="/health",code="503"}' in metrics
    assert 'ollama_node_dependency_up{dependency="redis"} 1' in metrics
    assert "ollama_node_up 1" in metrics

    # HTTP/1.1 keep-alive: several answers on one connection
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        for path in ("/a", "/health", "/b"):
            connection.request("GET", path)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
    finally:
        connection.close()

    started = time.monotonic()
    node.stop(timeout=10)  # SIGTERM
    assert time.monotonic() - started < 3
    node.reload()
    assert node.attrs["State"]["ExitCode"] == 0


def test_standin_serves_extra_paths_and_ports(lab: Lab) -> None:
    standin = lab.start("standin", "jaeger", ports=("8080/tcp", "14269/tcp"), environment={
        "STANDIN_PATHS": "/ /minio/health/live /api/health", "STANDIN_EXTRA_PORTS": "14269"})
    main, admin = host_port(standin, "8080/tcp"), host_port(standin, "14269/tcp")
    until(lambda: get(main, "/health")[0] == 200, 20, "the stand-in")
    assert [get(main, path)[0] for path in ("/minio/health/live", "/api/health", "/", "/no")] \
        == [200, 200, 200, 404]
    assert until(lambda: get(admin, "/")[0] == 200, 10, "the extra port")
    assert "standin ready" in standin.logs().decode()
    run_ok(standin, ["test", "-f", "/tmp/ready"])
