"""Fixtures for tests that drive a real Docker engine through the command line.

Every test gets its own project name; whatever carries that project's label
(containers, networks, volumes) is removed after the test, also when it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "images"))
LABEL = "ollamatopo.project"


@pytest.fixture(scope="session", autouse=True)
def lock_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The project locks of every command the tests run, in the tests' own folder rather
    than the host's /run/lock (each test's project has its own name, so they never meet)."""
    folder = tmp_path_factory.mktemp("locks")
    before = os.environ.get("OLLAMATOPO_LOCK_DIR")
    os.environ["OLLAMATOPO_LOCK_DIR"] = str(folder)
    yield folder
    if before is None:
        del os.environ["OLLAMATOPO_LOCK_DIR"]
    else:
        os.environ["OLLAMATOPO_LOCK_DIR"] = before


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    import docker

    client = docker.from_env()
    try:
        client.ping()
    except Exception as error:  # the message says how to fix it
        pytest.fail(f"no Docker engine answers ({error}); run `bash scripts/host-setup.sh`")
    yield client
    client.close()


@pytest.fixture(scope="session")
def standin(docker_client: Any) -> str:
    from build import ensure_image  # images/build.py

    return ensure_image("standin", docker_client)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.stdout.splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def named(self, event: str, service: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event
                and (service is None or e.get("service") == service)]


@dataclass
class Project:
    """A unique project on the real engine, with a plan folder and a CLI runner."""

    name: str
    folder: Path
    client: Any

    def write(self, text: str, filename: str = "plan.yaml") -> Path:
        path = self.folder / filename
        path.write_text(text.replace("PROJECT", self.name), encoding="utf-8")
        return path

    def run(self, *args: str, env: dict[str, str] | None = None, plan: str = "plan.yaml",
            timeout: float = 120) -> Result:
        command = [sys.executable, "-m", "ollamatopo", *args]
        if args and args[0] in ("up", "down", "status", "plan", "scale") and "--plan" not in args:
            command += ["--plan", str(self.folder / plan)]
        if args and args[0] in ("up", "down", "scale"):
            command += ["--log-format", "json"]
        environment = {**os.environ, "PYTHONPATH": str(ROOT),
                       "OLLAMATOPO_STATE_DIR": str(self.folder / "state"), **(env or {})}
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=environment, cwd=self.folder, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def report(self, result: Result) -> dict[str, Any]:
        path = result.named("report written")[-1]["path"]
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def containers(self) -> dict[str, Any]:
        found = self.client.containers.list(all=True, filters={"label": f"{LABEL}={self.name}"})
        return {c.labels["ollamatopo.service"]: c for c in found}

    def networks(self) -> list[Any]:
        return list(self.client.networks.list(filters={"label": f"{LABEL}={self.name}"}))

    def volumes(self) -> list[Any]:
        return list(self.client.volumes.list(filters={"label": f"{LABEL}={self.name}"}))

    def clean(self) -> None:
        import docker.errors

        for container in self.client.containers.list(
                all=True, filters={"label": f"{LABEL}={self.name}"}):
            container.remove(force=True)
        for network in self.networks():
            try:
                network.remove()
            except docker.errors.APIError as error:
                # Docker 20.10 may keep counting endpoints of removed containers and refuse
                # to remove the network until dockerd restarts (moby/moby#42119): nothing a
                # test can do; the tests that care assert on networks themselves.
                if "active endpoints" not in str(error):
                    raise
        for volume in self.volumes():
            volume.remove(force=True)


@pytest.fixture
def project(docker_client: Any, standin: str, tmp_path: Path) -> Iterator[Project]:
    made = Project(f"ot{uuid.uuid4().hex[:10]}", tmp_path, docker_client)
    try:
        yield made
    finally:
        made.clean()
