"""Image pulls from a real registry on 127.0.0.1 (Debian's docker-registry), holding images
the tests built and pushed themselves."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Project

TEST_LABEL = "ollamatopo.test"
LAYER_BYTES = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is missing: run `bash scripts/host-setup.sh`")
    folder = tmp_path_factory.mktemp("registry")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = folder / "config.yml"
    config.write_text(f"""version: 0.1
log: {{level: warn}}
storage: {{filesystem: {{rootdirectory: {folder / "data"}}}, delete: {{enabled: true}}}}
http: {{addr: "127.0.0.1:{port}"}}
""")
    with open(folder / "registry.log", "wb") as log, subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=log) as server:
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    log_text = (folder / "registry.log").read_text()
                    pytest.fail(f"the registry did not start: {log_text}")
                time.sleep(0.1)
            yield f"127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=10)


@pytest.fixture
def pushed(registry: str, docker_client: Any, standin: str, project: Project) -> Iterator[Any]:
    """Build an image with a large random layer on the stand-in, push it, drop it locally.
    Afterwards the project's containers go first, then the images they ran."""
    made: list[str] = []

    def push(name: str) -> str:
        reference = f"{registry}/ottest/{name}:{uuid.uuid4().hex[:8]}"
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for filename, data in (("Dockerfile", f"FROM {standin}\nCOPY blob /blob\n".encode()),
                                   ("blob", os.urandom(LAYER_BYTES))):
                info = tarfile.TarInfo(filename)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        context.seek(0)
        image, _ = docker_client.images.build(fileobj=context, custom_context=True, tag=reference,
                                              labels={TEST_LABEL: "pull"}, pull=False, rm=True)
        made.append(reference)
        repository, tag = reference.rsplit(":", 1)
        docker_client.images.push(repository, tag=tag)
        docker_client.images.remove(image.id, force=True)
        return reference

    try:
        yield push
    finally:
        project.clean()
        for image in docker_client.images.list(filters={"label": f"{TEST_LABEL}=pull"}):
            docker_client.images.remove(image.id, force=True)


def pulled_plan(first: str, second: str) -> str:
    return f"""
project: PROJECT
services:
  local:
    image: ollamatopo-standin:latest
    ready: {{log: standin ready, timeout: 30s}}
  first:
    image: {first}
    ready: {{log: standin ready, timeout: 60s}}
  second:
    image: {second}
    after: {{}}
    ready: {{log: standin ready, timeout: 60s}}
phases:
  - {{name: one, services: [local, first, second]}}
"""


def test_missing_images_are_pulled_concurrently_while_present_ones_start(
        project: Project, pushed: Any) -> None:
    first, second = pushed("first"), pushed("second")
    project.write(pulled_plan(first, second))
    result = project.run("up")
    assert result.code == 0, result.stderr

    started = {e["image"]: e["elapsed_s"] for e in result.named("image pull started")}
    ensured = {e["image"]: e for e in result.named("image ensured")}
    assert set(started) == {first, second}
    assert max(started.values()) < min(ensured[first]["elapsed_s"], ensured[second]["elapsed_s"])
    assert ensured[first]["pulled"] is True
    assert ensured["ollamatopo-standin:latest"]["pulled"] is False
    progress = [e for e in result.named("image pull progress") if e["image"] == first]
    assert progress and progress[-1]["total"] >= LAYER_BYTES
    # the service whose image is present did not wait for the pulls
    local_created = result.named("container created", "local")[0]["elapsed_s"]
    assert local_created < ensured[first]["elapsed_s"]


def test_an_image_that_cannot_be_pulled_fails_the_run_naming_it(project: Project,
                                                                 registry: str) -> None:
    missing = f"{registry}/ottest/missing:{uuid.uuid4().hex[:8]}"
    project.write(pulled_plan(missing, "ollamatopo-standin:latest"))
    result = project.run("up")
    assert result.code == 1
    assert f"image {missing} is not on the engine and could not be pulled" in result.stderr
    assert "Traceback" not in result.stderr
    assert project.containers() == {}

