"""compose's `build:` on the real engine (issue 12): images built offline (FROM the local
stand-in, never pulled) before their services need them and only when missing or changed;
a failed build fails its service and its dependents, with the build's last lines. Every
image a test builds carries `ollamatopo.build-project` and is removed by that label, also
when the test fails. The referee: `docker compose config` reads the same builds and names
the same images."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamatopo.plan._loading import load_plan
from tests.conftest import Project
from tests.test_compose_referee import ENV, compose_binary, theirs

__all__ = ["compose_binary"]  # the referee's fixture, used below

BUILD_PROJECT = "ollamatopo.build-project"
DIGEST = "ollamatopo.build-digest"

WEB = """
name: PROJECT
services:
  web:
    build: ./app
    x-ollamatopo:
      ready: {http: {port: 8080, path: /message.txt}, timeout: 20s}
  plain:
    image: ollamatopo-standin:latest
"""


@pytest.fixture
def builds(project: Project) -> Iterator[Project]:
    """The project, and afterwards every image it built removed by label."""
    try:
        yield project
    finally:
        project.clean()  # containers first: an image in use cannot be removed
        for image in project.client.images.list(filters={"label": f"{BUILD_PROJECT}="
                                                                   f"{project.name}"}):
            project.client.images.remove(image.id, force=True)


def context(project: Project, name: str, dockerfile: str, **files: str) -> Path:
    folder = project.folder / name
    folder.mkdir(exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    for file_name, text in files.items():
        (folder / file_name.replace("_", ".")).write_text(text, encoding="utf-8")
    return folder


def file_in(project: Project, service: str, path: str) -> str:
    code, output = project.containers()[service].exec_run(["cat", path])
    return str(output.decode()) if code == 0 else f"(exit {code})"


def timed_up(project: Project, *options: str) -> tuple[Any, float]:
    began = time.monotonic()
    result = project.run("up", *options)
    return result, time.monotonic() - began


def test_built_before_up_not_again_while_unchanged_and_again_after_a_change(
        builds: Project) -> None:
    app = context(builds, "app", "FROM ollamatopo-standin:latest\n"
                                 "COPY message.txt /www/message.txt\n",
                  message_txt="hello\n", notes_tmp="ignored\n")
    (app / ".dockerignore").write_text("*.tmp\n", encoding="utf-8")
    builds.write(WEB)
    image = f"{builds.name}-web"

    first, first_s = timed_up(builds)
    assert first.code == 0, first.stderr
    assert [e["cause"] for e in first.named("image build started")] == ["missing"]
    assert file_in(builds, "web", "/www/message.txt") == "hello\n"
    labels = builds.client.images.get(image).labels
    assert labels[BUILD_PROJECT] == builds.name and labels[DIGEST]
    assert builds.containers()["web"].image.id == builds.client.images.get(image).id

    second, second_s = timed_up(builds)
    assert second.code == 0, second.stderr
    assert not second.named("image build started")
    assert not second.named("container created")  # nothing recreated either
    (app / "notes.tmp").write_text("changed, but ignored\n", encoding="utf-8")
    ignored, _ = timed_up(builds)
    assert not ignored.named("image build started")

    (app / "message.txt").write_text("changed\n", encoding="utf-8")
    third, third_s = timed_up(builds)
    assert third.code == 0, third.stderr
    assert [e["cause"] for e in third.named("image build started")] == [
        "its build inputs changed"]
    assert [e["cause"] for e in third.named("container created")] == [
        "its image is to be rebuilt"]
    assert not third.named("container created", "plain")
    assert file_in(builds, "web", "/www/message.txt") == "changed\n"
    assert builds.client.images.get(image).labels[DIGEST] != labels[DIGEST]
    total = {run: result.named("run completed")[0]["total_s"]
             for run, result in (("first", first), ("second", second), ("third", third))}
    print(f"\nbuild then up {first_s:.2f} s (run {total['first']} s); unchanged up "
          f"{second_s:.2f} s (run {total['second']} s); changed file {third_s:.2f} s "
          f"(run {total['third']} s)")


def test_up_build_builds_again_keeps_an_unchanged_container_and_no_build_never_builds(
        builds: Project) -> None:
    context(builds, "app", "FROM ollamatopo-standin:latest\n"
                           "COPY message.txt /www/message.txt\n", message_txt="hello\n")
    builds.write(WEB)
    image = f"{builds.name}-web"
    assert builds.run("up").code == 0
    container = builds.containers()["web"].id
    built = builds.client.images.get(image).id

    again = builds.run("up")
    assert again.code == 0, again.stderr
    assert not again.named("image build started")

    forced, forced_s = timed_up(builds, "--build")
    assert forced.code == 0, forced.stderr
    assert [e["cause"] for e in forced.named("image build started")] == [
        "--build asks for it"]
    assert [e["image"] for e in forced.named("image ensured") if e.get("built")] == [image]
    assert builds.client.images.get(image).id == built  # the layer cache's image
    assert not forced.named("container created")
    assert builds.containers()["web"].id == container

    builds.client.images.remove(image, force=True)  # untagged; the container keeps it
    refused = builds.run("up", "--no-build")
    assert refused.code == 2, refused.stderr
    assert "up --no-build: the image of web (build:) is not on the engine; run up without " \
           "--no-build" in refused.stderr
    assert "Traceback" not in refused.stderr and not refused.named("image build started")
    print(f"\nup --build with unchanged inputs {forced_s:.2f} s "
          f"(run {forced.named('run completed')[0]['total_s']} s)")


FAILING = """
name: PROJECT
services:
  broken:
    build: ./bad
    x-ollamatopo: {optional: OPTIONAL}
  after-broken:
    image: ollamatopo-standin:latest
    depends_on: [broken]
    x-ollamatopo: {optional: true}
  plain:
    image: ollamatopo-standin:latest
"""
BAD = ("FROM ollamatopo-standin:latest\n"
       "RUN sleep 1 && echo about to fail && echo the last words && exit 3\n")


def test_a_failed_build_fails_only_its_service_and_its_dependents(builds: Project) -> None:
    context(builds, "bad", BAD)
    builds.write(FAILING.replace("OPTIONAL", "true"))
    result = builds.run("up")
    assert result.code == 0, result.stderr  # both failures are of optional services
    failed = {e["service"]: e["error"] for e in result.named("service failed")}
    assert set(failed) == {"broken", "after-broken"}
    assert failed["broken"].startswith("its image could not be built: build image "
                                       f"{builds.name}-broken: The command")
    assert "returned a non-zero code: 3" in failed["broken"]
    assert "    | about to fail\n    | the last words" in failed["broken"]
    assert failed["after-broken"] == "dependency 'broken' failed"
    # A service with its image at hand did not wait for the build.
    ready = result.named("service healthy", "plain")[0]["elapsed_s"]
    assert ready < result.named("image build failed")[0]["elapsed_s"]
    assert set(builds.containers()) >= {"plain"}
    assert not builds.client.images.list(filters={"label": f"{BUILD_PROJECT}={builds.name}"})


def test_a_failed_build_of_a_required_service_fails_the_run(builds: Project) -> None:
    context(builds, "bad", BAD)
    builds.write(FAILING.replace("OPTIONAL", "false"))
    result = builds.run("up")
    assert result.code == 1  # as for any failed service
    assert "service 'broken' failed: its image could not be built" in result.stderr
    assert "    | the last words" in result.stderr
    assert builds.containers() == {}  # rolled back


INLINE = """
name: PROJECT
services:
  staged:
    image: PROJECT-staged:1
    build:
      context: ./empty
      dockerfile_inline: |   # compose interpolates it: $$ for the Dockerfile's own $
        FROM ollamatopo-standin:latest AS base
        ARG GREETING=none
        ARG FROM_ENV
        RUN mkdir -p /www && echo "$$GREETING $$FROM_ENV" > /www/greeting.txt
        FROM base AS final
        RUN echo final > /www/stage.txt
      target: base
      args: {GREETING: hi, FROM_ENV: null}
      labels: {team: shop}
"""


def test_an_inline_dockerfile_with_args_a_target_and_labels(builds: Project) -> None:
    (builds.folder / "empty").mkdir()
    builds.write(INLINE)
    result = builds.run("up", env={"FROM_ENV": "from-the-environment"})
    assert result.code == 0, result.stderr
    assert file_in(builds, "staged", "/www/greeting.txt") == "hi from-the-environment\n"
    assert file_in(builds, "staged", "/www/stage.txt").startswith("(exit")  # not built
    image = builds.client.images.get(f"{builds.name}-staged:1")
    assert image.labels["team"] == "shop"


STEPS = """
name: PROJECT
services:
  web:
    build:
      context: ./app
      network: none
      shm_size: 32m
      extra_hosts: {cache.internal: 10.0.0.5}
      tags: [PROJECT-web:extra]
      cache_from: [ollamatopo-standin:latest]
      cache_to: [type=inline]
      no_cache: true
      platforms: [linux/amd64]  # one: the engine is asked for it (this engine's own)
    x-ollamatopo:
      ready: {http: {port: 8080, path: /hosts.txt}, timeout: 20s}
"""
# What the build's step saw: its /etc/hosts, its /dev/shm, its network interfaces.
SEEN = ("FROM ollamatopo-standin:latest\n"
        "RUN mkdir -p /www && cat /etc/hosts > /www/hosts.txt"
        " && df -k /dev/shm | tail -n 1 > /www/shm.txt && cat /proc/net/dev > /www/links.txt\n")


def test_the_build_steps_see_their_network_hosts_and_shm_and_the_image_its_tags(
        builds: Project) -> None:
    context(builds, "app", SEEN)
    builds.write(STEPS)
    first = builds.run("up")
    assert first.code == 0, first.stderr
    hosts = file_in(builds, "web", "/www/hosts.txt").splitlines()
    assert any(line.split() == ["10.0.0.5", "cache.internal"] for line in hosts), hosts
    assert file_in(builds, "web", "/www/shm.txt").split()[1] == str(32 * 1024)  # in KiB
    links = file_in(builds, "web", "/www/links.txt")
    assert " lo:" in links and "eth0" not in links, links  # network: none
    image = builds.client.images.get(f"{builds.name}-web")
    assert builds.client.images.get(f"{builds.name}-web:extra").id == image.id
    assert (image.attrs["Os"], image.attrs["Architecture"]) == ("linux", "amd64")
    # no_cache: a forced build runs its steps again (with the cache it gives the same image)
    forced = builds.run("up", "--build")
    assert forced.code == 0, forced.stderr
    assert builds.client.images.get(f"{builds.name}-web").id != image.id
    assert builds.client.images.get(f"{builds.name}-web:extra").id != image.id


# --- the referee ----------------------------------------------------------------------------

REFEREE = """
name: builds
services:
  short:
    build: ./app
  long:
    image: team/long:2
    build:
      context: app
      dockerfile: ../Dockerfile.long
      args: [VERSION=2, FROM_ENV, UNSET, EMPTY=]
      target: runtime
      labels: {team: shop}
  inline:
    build:
      context: .
      dockerfile_inline: |
        FROM scratch
      args: {K: v, FROM_ENV: null}
  steps:
    build:
      context: .
      cache_from: [team/steps:cache, "type=registry,ref=team/steps:cache2"]
      cache_to: [type=inline]
      no_cache: true
      pull: true
      network: host
      shm_size: 64m
      extra_hosts: {cache.internal: 10.0.0.5, a.internal: "::1"}
      tags: [team/steps:extra]
      platforms: [linux/amd64, linux/arm64]
"""


def test_compose_reads_the_same_builds_and_names_the_same_images(compose_binary: Path,
                                                                 tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    path = tmp_path / "compose.yaml"
    path.write_text(REFEREE, encoding="utf-8")
    env = {"FROM_ENV": "yes"}
    document = theirs(compose_binary, path, env)
    plan = load_plan(path, environ=env).plan
    for name, spec in plan.services.items():
        build = spec.build
        assert build is not None
        theirs_build = document["services"][name]["build"]
        # compose writes extra hosts as name=ip (in its own order) and the size in bytes
        if "extra_hosts" in theirs_build:
            theirs_build["extra_hosts"] = sorted(theirs_build["extra_hosts"])
        hosts = sorted(host.replace(":", "=", 1) for host in build.extra_hosts)
        assert theirs_build == {
            "context": str(build.context_in(path.parent)),
            **({"dockerfile_inline": build.dockerfile_inline} if build.dockerfile_inline
               else {"dockerfile": build.dockerfile or "Dockerfile"}),
            **({"args": build.args} if build.args else {}),
            **({"target": build.target} if build.target else {}),
            **({"labels": build.labels} if build.labels else {}),
            **({"cache_from": build.cache_from} if build.cache_from else {}),
            **({"cache_to": build.cache_to} if build.cache_to else {}),
            **({"no_cache": True} if build.no_cache else {}),
            **({"pull": True} if build.pull else {}),
            **({"network": build.network} if build.network else {}),
            **({"shm_size": str(build.shm_size)} if build.shm_size else {}),
            **({"extra_hosts": hosts} if hosts else {}),
            **({"tags": build.tags} if build.tags else {}),
            **({"platforms": build.platforms} if build.platforms else {}),
        }, name
    images = subprocess.run([str(compose_binary), "-f", str(path), "config", "--images"],
                            capture_output=True, text=True, env={**ENV, **env}, check=True,
                            timeout=120).stdout.split()
    assert sorted(images) == sorted(spec.image for spec in plan.services.values())
