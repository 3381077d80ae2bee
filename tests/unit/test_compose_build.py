"""compose's `build:` without an engine: what the compose forms become (and what is refused),
the image's name, `config`'s output, the digest of the build inputs, which builds `up`
does (and which containers it recreates for them), and the image supply: builds run
beside pulls, a service waits only for its own image, a failed build fails its services."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from ollamatopo._errors import (
    EngineError,
    ImageNotBuilt,
    PlanError,
    ServiceFailed,
    UsageError,
)
from ollamatopo.engine._build import (
    ARCHIVED_DOCKERFILE,
    LABEL_BUILD_DIGEST,
    LABEL_BUILD_PROJECT,
    BuildConfig,
    build_configs,
    from_images,
)
from ollamatopo.engine._docker import Engine
from ollamatopo.engine._payloads import container_config
from ollamatopo.engine._snapshot import ObservedContainer, Snapshot
from ollamatopo.plan._compose_out import to_compose
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.report._recorder import RunRecorder
from ollamatopo.run._reconcile import FORCED, BuildAction, Verb, decide_builds, reconcile
from ollamatopo.run._supplies import ImageSupply


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> LoadedPlan:
    folder = tmp_path / "shop"
    folder.mkdir(exist_ok=True)
    path = folder / "compose.yaml"
    path.write_text(text, encoding="utf-8")
    return load_plan(path, environ=env or {})


def refused(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PlanError) as caught:
        load(tmp_path, text)
    return [str(problem) for problem in caught.value.problems]


# --- translation ------------------------------------------------------------------------------


def test_the_short_form_is_the_context_and_the_image_is_named_as_compose_names_it(
        tmp_path: Path) -> None:
    plan = load(tmp_path, "services:\n  web: {build: ./app}\n").plan
    web = plan.services["web"]
    assert web.build is not None and web.build.context == "./app"
    assert web.build.dockerfile is None and web.build.args == {}
    assert web.image == "shop-web"  # compose: <project>-<service>, tag latest


def test_the_long_form_and_image_as_its_tag(tmp_path: Path) -> None:
    plan = load(tmp_path, """
services:
  api:
    image: team/api:1.2
    build:
      context: ./src
      dockerfile: docker/Dockerfile.prod
      args: [VERSION=1.2, FROM_ENV, UNSET]
      target: runtime
      labels: {team: shop}
      x-note: ignored, as every x- key
""", env={"FROM_ENV": "yes"}).plan
    api = plan.services["api"]
    assert api.image == "team/api:1.2"
    assert api.build is not None
    assert (api.build.context, api.build.dockerfile, api.build.target) == (
        "./src", "docker/Dockerfile.prod", "runtime")
    # A bare arg takes its value from the environment, and is left out when unset (compose).
    assert api.build.args == {"VERSION": "1.2", "FROM_ENV": "yes"}
    assert api.build.labels == {"team": "shop"}


def test_replicas_share_the_image_of_their_declared_service(tmp_path: Path) -> None:
    plan = load(tmp_path, "services:\n  node: {build: ., deploy: {replicas: 3}}\n").plan
    assert {spec.image for spec in plan.services.values()} == {"shop-node"}
    assert len(build_configs(plan, plan.services, tmp_path)) == 1


def test_build_keys_not_carried_out_and_wrong_ones_are_refused(tmp_path: Path) -> None:
    problems = refused(tmp_path, """
services:
  a:
    build: {context: ., secrets: [x], ssh: [default], ulimits: {nproc: 1}}
  b:
    build: {context: ., dockerfile: Dockerfile, dockerfile_inline: "FROM scratch"}
  c:
    build: https://github.com/team/repo.git
  d:
    build: {context: ., tagz: [x]}
""")
    text = "\n".join(problems)
    for key in ("secrets", "ssh", "ulimits"):
        assert f"services.a.build.{key} (line 4): not supported yet" in text
    assert "dockerfile and dockerfile_inline exclude each other" in text
    assert "services.c.build" in text and "remote build context" in text
    assert "not supported yet" in text.split("services.c.build")[1]
    assert "services.d.build.tagz" in text


STEPS = """
services:
  web:
    build:
      context: app
      cache_from: [team/web:cache, "type=registry,ref=team/web:cache2"]
      cache_to: [type=inline]
      no_cache: true
      pull: true
      network: none
      shm_size: 64m
      extra_hosts: {cache.internal: 10.0.0.5, v6.internal: "::1"}
      tags: [team/web:extra, team/web]
"""


def test_the_build_keys_of_the_engines_builder_are_read(tmp_path: Path) -> None:
    build = load(tmp_path, STEPS).plan.services["web"].build
    assert build is not None
    assert build.cache_images == ["team/web:cache", "team/web:cache2"]
    assert (build.no_cache, build.pull, build.network, build.shm_size) == (
        True, True, "none", 64 * 1024 * 1024)
    assert build.extra_hosts == ["cache.internal:10.0.0.5", "v6.internal:::1"]
    assert build.tags == ["team/web:extra", "team/web"]
    listed = load(tmp_path, "services:\n  web:\n    build: {context: ., extra_hosts: "
                            "[a.internal=10.0.0.6, 'b.internal:10.0.0.7']}\n").plan
    assert listed.services["web"].build.extra_hosts == [  # type: ignore[union-attr]
        "a.internal:10.0.0.6", "b.internal:10.0.0.7"]


def test_build_keys_that_need_buildkit_are_refused_with_the_fix(tmp_path: Path) -> None:
    problems = refused(tmp_path, """
services:
  web:
    build:
      context: .
      cache_from: ["type=local,src=/tmp/cache"]
      cache_to: ["type=registry,ref=team/web:cache"]
      extra_hosts: [nohost]
      tags: ["team/web@sha256:0123456789012345678901234567890123456789012345678901234567890123"]
      shm_size: lots
""")
    text = "\n".join(problems)
    assert "services.web.build.cache_from[0] (line 6): 'type=local,src=/tmp/cache': the " \
           "engine's own builder takes a cache only from an image: write its name, or " \
           "type=registry,ref=NAME" in text
    assert "services.web.build.cache_to[0] (line 7)" in text and "only type=inline" in text
    assert "services.web.build.extra_hosts[0] (line 8): 'nohost' is not an extra host" in text
    assert "services.web.build.tags[0] (line 9)" in text and "write name:tag" in text
    assert "services.web.build.shm_size (line 10)" in text


def test_build_extra_hosts_merge_as_a_mapping_across_files(tmp_path: Path) -> None:
    from ollamatopo.plan._compose import merge_compose

    merged = merge_compose(
        {"services": {"web": {"build": {"extra_hosts": ["a=10.0.0.1", "b=10.0.0.2"]}}}},
        {"services": {"web": {"build": {"extra_hosts": {"b": "10.0.0.3"}}}}})
    assert merged["services"]["web"]["build"]["extra_hosts"] == {"a": "10.0.0.1",
                                                                 "b": "10.0.0.3"}


def test_config_writes_the_build_keys_and_reads_them_back(tmp_path: Path) -> None:
    import yaml

    loaded = load(tmp_path, STEPS)
    document = to_compose(loaded.plan, loaded.path.parent)
    again = load(tmp_path, yaml.safe_dump(document)).plan.services["web"].build
    assert again == loaded.plan.services["web"].build.model_copy(  # type: ignore[union-attr]
        update={"context": str((tmp_path / "shop" / "app").resolve())})


def test_config_writes_the_build_with_an_absolute_context(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  web:
    build: {context: app, args: {A: "1"}, dockerfile_inline: "FROM scratch\\n"}
""")
    document = to_compose(loaded.declared or loaded.plan, loaded.path.parent)
    assert document["services"]["web"]["image"] == "shop-web"
    assert document["services"]["web"]["build"] == {
        "context": str((tmp_path / "shop" / "app").resolve()),
        "dockerfile_inline": "FROM scratch\n", "args": {"A": "1"}}


def test_a_service_without_build_keeps_its_container_hash(tmp_path: Path) -> None:
    """`build` adds nothing to the container's payload: the image name is what it uses."""
    text = "services:\n  web: {image: shop-web}\n"
    plain = load(tmp_path, text).plan
    built = load(tmp_path, "services:\n  web: {build: .}\n").plan
    assert container_config(plain, "web", tmp_path).config_hash == \
        container_config(built, "web", tmp_path).config_hash


# --- the digest -------------------------------------------------------------------------------


@pytest.fixture
def context(tmp_path: Path) -> Path:
    folder = tmp_path / "shop" / "app"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM base:1 AS build\nFROM build\nCOPY . /app\n")
    (folder / "main.py").write_text("print('hello')\n")
    (folder / "notes.tmp").write_text("scratch\n")
    (folder / ".dockerignore").write_text("# editor files\n*.tmp\n")
    return folder


def config_of(tmp_path: Path, build: str = "app", env: dict[str, str] | None = None,
              ) -> BuildConfig:
    loaded = load(tmp_path, f"services:\n  web:\n    build: {build}\n", env)
    return build_configs(loaded.plan, ["web"], loaded.path.parent)["shop-web"]


def digest_of(tmp_path: Path, build: str = "app", image_ids: dict[str, str] | None = None
              ) -> str:
    return config_of(tmp_path, build).digest(image_ids or {"base:1": "sha256:1"})


def test_the_digest_follows_the_content_of_what_is_sent(tmp_path: Path,
                                                        context: Path) -> None:
    first = digest_of(tmp_path)
    assert digest_of(tmp_path) == first
    os.utime(context / "main.py", (1, 1))  # saved again, unchanged: nothing to rebuild
    assert digest_of(tmp_path) == first
    (context / "notes.tmp").write_text("ignored by .dockerignore\n")
    assert digest_of(tmp_path) == first
    (context / "main.py").write_text("print('changed')\n")
    changed = digest_of(tmp_path)
    assert changed != first
    (context / "main.py").chmod(0o755)  # the executable bit is part of the image
    assert digest_of(tmp_path) not in (first, changed)
    (context / "new.txt").write_text("a new file\n")
    assert len({first, changed, digest_of(tmp_path)}) == 3


@pytest.mark.parametrize("build", [
    "{context: app, args: {A: '1'}}",
    "{context: app, target: build}",
    "{context: app, labels: {x: y}}",
    "{context: app, dockerfile_inline: 'FROM base:1'}",
])
def test_args_target_labels_and_the_dockerfile_change_the_digest(
        tmp_path: Path, context: Path, build: str) -> None:
    assert digest_of(tmp_path, build) != digest_of(tmp_path)


@pytest.mark.parametrize("build", [
    "{context: app, network: none}",
    "{context: app, shm_size: 64m}",
    "{context: app, extra_hosts: ['cache.internal:10.0.0.5']}",
    "{context: app, tags: ['team/web:extra']}",
    "{context: app, platforms: [linux/arm64]}",
])
def test_what_the_steps_see_and_the_extra_tags_change_the_digest(
        tmp_path: Path, context: Path, build: str) -> None:
    assert digest_of(tmp_path, build) != digest_of(tmp_path)


@pytest.mark.parametrize(("service", "platform"), [
    ("build: {context: app, platforms: [linux/amd64, linux/arm64]}", None),  # the engine's
    ("build: {context: app, platforms: [linux/arm64]}", "linux/arm64"),  # even emulated
    ("build: {context: app, platforms: [linux/amd64, linux/arm64]}\n    platform: linux/arm64",
     "linux/arm64"),
    ("build: app\n    platform: linux/amd64", "linux/amd64"),
    ("build: app", None),
])
def test_up_builds_for_one_platform_as_compose_up_picks_it(
        tmp_path: Path, context: Path, service: str, platform: str | None) -> None:
    loaded = load(tmp_path, f"services:\n  web:\n    {service}\n")
    config = build_configs(loaded.plan, ["web"], loaded.path.parent)["shop-web"]
    assert config.steps.platform == platform


def test_docker_default_platform_is_the_platform_of_a_service_without_one(
        tmp_path: Path) -> None:
    text = ("services:\n  web: {build: .}\n  db: {image: db:1}\n"
            "  pinned: {image: p:1, platform: linux/amd64}\n")
    plan = load(tmp_path, text, {"DOCKER_DEFAULT_PLATFORM": "linux/arm64"}).plan
    assert {name: spec.platform for name, spec in plan.services.items()} == {
        "web": "linux/arm64", "db": "linux/arm64", "pinned": "linux/amd64"}
    assert build_configs(plan, ["web"], tmp_path / "shop")["shop-web"].steps.platform == \
        "linux/arm64"
    (tmp_path / "shop" / ".env").write_text("DOCKER_DEFAULT_PLATFORM=linux/arm64\n")
    assert load(tmp_path, text).plan.services["db"].platform == "linux/arm64"  # from .env
    swarm = load_plan(tmp_path / "shop" / "compose.yaml", environ={}, on_swarm=True).plan
    assert swarm.services["db"].platform is None  # stack deploy does not read it
    problems = refused(tmp_path, "services:\n  web: {build: {context: ., platforms: "
                                 "[linux/amd64]}}\n")
    assert any("platform linux/arm64 is not one of build.platforms (linux/amd64)" in problem
               and "DOCKER_DEFAULT_PLATFORM" in problem for problem in problems), problems


def test_a_platform_the_build_does_not_list_is_refused(tmp_path: Path) -> None:
    problems = refused(tmp_path, "services:\n  web:\n    build: {context: ., platforms: "
                                 "[linux/amd64]}\n    platform: linux/arm64\n")
    assert any("platform linux/arm64 is not one of build.platforms (linux/amd64): add it "
               "there or change platform" in problem for problem in problems), problems


@pytest.mark.parametrize("build", [
    "{context: app, cache_from: [team/web:cache]}",
    "{context: app, cache_to: [type=inline]}",
    "{context: app, no_cache: true}",
    "{context: app, pull: true}",
])
def test_how_the_build_is_made_does_not_change_the_digest(
        tmp_path: Path, context: Path, build: str) -> None:
    assert digest_of(tmp_path, build) == digest_of(tmp_path)


def test_a_dockerfile_outside_the_context_is_sent_with_it_and_counted(
        tmp_path: Path, context: Path) -> None:
    outside = tmp_path / "shop" / "Dockerfile.web"
    outside.write_text("FROM base:1\n")
    config = config_of(tmp_path, "{context: app, dockerfile: ../Dockerfile.web}")
    assert (config.dockerfile, config.dockerfile_text) == (ARCHIVED_DOCKERFILE, "FROM base:1\n")
    before = config.digest({})
    outside.write_text("FROM base:2\n")
    assert config_of(tmp_path, "{context: app, dockerfile: ../Dockerfile.web}").digest(
        {}) != before
    inside = config_of(tmp_path)
    assert (inside.dockerfile, inside.dockerfile_text) == ("Dockerfile", None)


def test_a_rebuilt_base_image_changes_the_digest(tmp_path: Path, context: Path) -> None:
    config = config_of(tmp_path)
    assert config.bases == ("base:1",)  # `FROM build` names the earlier stage
    assert config.digest({"base:1": "sha256:1"}) != config.digest({"base:1": "sha256:2"})
    assert config.digest({"base:1": "sha256:1", "other:1": "x"}) == \
        config.digest({"base:1": "sha256:1"})


def test_the_archive_holds_what_the_digest_counts(tmp_path: Path, context: Path) -> None:
    import tarfile

    with config_of(tmp_path).archive() as archive, tarfile.open(fileobj=archive) as tar:
        names = set(tar.getnames())
    assert {"Dockerfile", "main.py", ".dockerignore"} <= names
    assert "notes.tmp" not in names


def test_an_unreadable_context_gives_a_digest_and_not_an_error(tmp_path: Path) -> None:
    config = config_of(tmp_path, "./nowhere")
    assert config.bases == () and config.digest({})  # the build will say what is wrong


@pytest.mark.parametrize(("dockerfile", "bases"), [
    ("FROM scratch\nCOPY x /x\n", []),
    ("from --platform=linux/amd64 team/base:2 as deps\nFROM deps\nFROM other\n",
     ["team/base:2", "other"]),
    ("ARG V=1\nFROM base:${V}\nFROM \\\n  split:1\n", ["split:1"]),
    ("FROM a:1\nFROM a:1\n", ["a:1"]),
])
def test_the_images_a_dockerfile_starts_from(dockerfile: str, bases: list[str]) -> None:
    assert list(from_images(dockerfile)) == bases


def test_the_image_is_labelled_with_its_digest_and_project(tmp_path: Path,
                                                           context: Path) -> None:
    labels = config_of(tmp_path, "{context: app, labels: {team: shop}}").image_labels("d1")
    assert labels == {"team": "shop", LABEL_BUILD_DIGEST: "d1", LABEL_BUILD_PROJECT: "shop"}


# --- what up does -----------------------------------------------------------------------------


def observed(tmp_path: Path, image_id: str) -> ObservedContainer:
    plan = load(tmp_path, "services:\n  web: {build: app}\n").plan
    config = container_config(plan, "web", tmp_path)
    return ObservedContainer(id="c1", name="shop-web", service="web",
                             config_hash=config.config_hash, state="running", exit_code=0,
                             image_id=image_id)


def test_up_builds_a_missing_or_changed_image_and_recreates_its_container(
        tmp_path: Path, context: Path) -> None:
    loaded = load(tmp_path, "services:\n  web: {build: app}\n")
    plan = loaded.plan
    containers = {"web": container_config(plan, "web", tmp_path)}
    builds = build_configs(plan, ["web"], loaded.path.parent)
    digest = builds["shop-web"].digest({"base:1": "sha256:1"})
    running = (observed(tmp_path, "sha256:old"),)

    missing = reconcile(containers, [], Snapshot("shop"), builds=builds)
    assert [str(action) for action in missing.builds] == ["build image shop-web: missing"]
    assert missing.services["web"].verb is Verb.CREATE

    current = Snapshot("shop", running, image_ids={"shop-web": "sha256:old",
                                                   "base:1": "sha256:1"},
                       build_digests={"shop-web": digest})
    kept = reconcile(containers, [], current, builds=builds)
    assert kept.builds == () and kept.services["web"].verb is Verb.KEEP

    (context / "main.py").write_text("print('changed')\n")
    builds = build_configs(plan, ["web"], loaded.path.parent)
    changed = reconcile(containers, [], current, builds=builds)
    assert [action.cause for action in changed.builds] == ["its build inputs changed"]
    assert (changed.services["web"].verb, changed.services["web"].cause) == (
        Verb.RECREATE, "its image is to be rebuilt")

    rebased = Snapshot("shop", running, image_ids={"shop-web": "sha256:old",
                                                   "base:1": "sha256:2"},
                       build_digests={"shop-web": digest})
    assert [a.config.image for a in decide_builds(build_configs(
        plan, ["web"], loaded.path.parent), rebased)] == ["shop-web"]


def test_up_build_forces_every_build_and_no_build_none(tmp_path: Path,
                                                        context: Path) -> None:
    loaded = load(tmp_path, "services:\n  web: {build: app}\n")
    containers = {"web": container_config(loaded.plan, "web", tmp_path)}
    builds = build_configs(loaded.plan, ["web"], loaded.path.parent)
    digest = builds["shop-web"].digest({"base:1": "sha256:1"})
    current = Snapshot("shop", (observed(tmp_path, "sha256:old"),),
                       image_ids={"shop-web": "sha256:old", "base:1": "sha256:1"},
                       build_digests={"shop-web": digest})

    forced = reconcile(containers, [], current, builds=builds, build_policy="always")
    assert [(a.config.image, a.digest, a.cause) for a in forced.builds] == [
        ("shop-web", digest, FORCED)]
    # Whether the container goes is the run's to say, once the build gave its image id.
    assert forced.services["web"].verb is Verb.KEEP
    stale = Snapshot("shop", current.containers, image_ids=current.image_ids,
                     build_digests={"shop-web": "other"})
    assert [a.cause for a in decide_builds(builds, stale, "always")] == [
        "its build inputs changed"]
    assert reconcile(containers, [], stale, builds=builds,
                     build_policy="always").services["web"].verb is Verb.RECREATE

    assert decide_builds(builds, stale, "never") == ()  # used as it is, as compose does
    with pytest.raises(ImageNotBuilt, match=r"image of web \(build:\) is not on the engine"
                                            r".*without --no-build") as refused:
        decide_builds(builds, Snapshot("shop"), "never")
    assert refused.value.exit_code == 2


@pytest.mark.anyio
async def test_a_forced_build_recreates_only_a_container_whose_image_it_changed(
        tmp_path: Path, context: Path) -> None:
    from types import SimpleNamespace

    from ollamatopo.run._reconcile import ServiceAction
    from ollamatopo.run._scheduler import _Run

    loaded = load(tmp_path, "services:\n  web: {build: app}\n")
    builds = build_configs(loaded.plan, ["web"], loaded.path.parent)
    config = container_config(loaded.plan, "web", tmp_path)
    kept = ServiceAction("web", Verb.KEEP, "running, up to date",
                         observed(tmp_path, "sha256:old"))

    class Built:
        def __init__(self, image_id: str) -> None:
            self.built = image_id

        async def wait(self, service: str, image: str) -> None:
            pass

        async def image_id(self, image: str) -> str:  # the engine's, after the build
            return self.built

    def run(cause: str, image_id: str) -> Any:
        build = BuildAction(builds["shop-web"], "d", cause)
        desired = SimpleNamespace(containers={"web": config},
                                  reconciliation=SimpleNamespace(builds=(build,)))
        supply = Built(image_id)
        return SimpleNamespace(desired=desired, images=supply, engine=supply)

    same = await _Run._rebuilt_or(run(FORCED, "sha256:old"), kept)
    assert same is kept
    other = await _Run._rebuilt_or(run(FORCED, "sha256:new"), kept)
    assert (other.verb, other.cause, other.existing) == (
        Verb.RECREATE, "its image was rebuilt", kept.existing)
    assert await _Run._rebuilt_or(run("missing", "sha256:new"), kept) is kept


def test_up_build_is_refused_on_a_swarm_and_parsed_as_the_policy(tmp_path: Path) -> None:
    from ollamatopo.app._settings import Settings
    from ollamatopo.app._up import UpRequest, up_options
    from ollamatopo.cli._main import build_parser

    parse = build_parser().parse_args
    assert [parse(["up", *flags]).build for flags in ([], ["--build"], ["--no-build"])] == [
        "auto", "always", "never"]
    loaded = load(tmp_path, "services:\n  web: {image: web}\n")
    swarm = Settings(backend="swarm", state_dir=tmp_path / "state")
    with pytest.raises(UsageError, match=r"up --build: a swarm .* builds none") as refused:
        up_options(swarm, loaded, UpRequest(build="always"))
    assert refused.value.exit_code == 2
    assert up_options(swarm, loaded, UpRequest(build="never")).build == "never"


# --- the image supply -------------------------------------------------------------------------


class FakeEngine:
    """Pulls and builds that wait for `gates[image]` and fail with `refuse[image]`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.gates: dict[str, anyio.Event] = {}
        self.refuse: dict[str, str] = {}

    async def _do(self, verb: str, image: str) -> None:
        self.calls.append((verb, image))
        if image in self.gates:
            await self.gates[image].wait()
        if image in self.refuse:
            raise EngineError(self.refuse[image])

    async def pull(self, image: str, on_progress: Callable[[int, int], None] | None = None,
                   platform: str | None = None) -> None:
        await self._do("pull", image)

    async def build(self, config: BuildConfig, digest: str,
                    on_line: Callable[[str], None] | None = None) -> str:
        if on_line is not None:
            on_line("Step 1/1 : FROM base:1")
        await self._do(f"build {digest}", config.image)
        return "sha256:new"


def supply(tmp_path: Path, engine: FakeEngine, present: dict[str, str]) -> ImageSupply:
    loaded = load(tmp_path, """
services:
  web: {build: app}
  api: {build: app, image: "api:2"}
  db: {image: "db:1"}
  cache: {image: "cache:1"}
""")
    builds = build_configs(loaded.plan, loaded.plan.services, loaded.path.parent)
    recorder = RunRecorder(run_id="run1", project="shop", plan_path="compose.yaml",
                           phases=dict.fromkeys(loaded.plan.services, "all"),
                           phase_order=["all"])
    actions = decide_builds(builds, Snapshot("shop", image_ids=present))
    images = [spec.image for spec in loaded.plan.services.values()]
    return ImageSupply(engine, recorder, images, present, actions)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_builds_run_beside_pulls_and_a_present_image_waits_for_none(
        tmp_path: Path, context: Path) -> None:
    engine = FakeEngine()
    engine.gates = {"shop-web": anyio.Event(), "api:2": anyio.Event()}
    images = supply(tmp_path, engine, {"db:1": "sha256:db", "api:2": "sha256:api"})
    assert images.missing == ["api:2", "cache:1", "shop-web"]  # api:2 is present, unlabelled
    async with anyio.create_task_group() as group:
        group.start_soon(images.pull_missing)
        with anyio.fail_after(2):
            await images.wait("db", "db:1")  # present: no waiting for the builds
            await images.wait("cache", "cache:1")  # pulled meanwhile
        engine.gates["shop-web"].set()
        engine.gates["api:2"].set()
        with anyio.fail_after(2):
            await images.wait("web", "shop-web")
            await images.wait("api", "api:2")
    verbs = sorted((verb.split()[0], image) for verb, image in engine.calls)
    assert verbs == [("build", "api:2"), ("build", "shop-web"), ("pull", "cache:1")]


@pytest.mark.anyio
async def test_a_failed_build_fails_only_the_services_of_its_image(
        tmp_path: Path, context: Path) -> None:
    engine = FakeEngine()
    engine.refuse = {"shop-web": "build image shop-web: returned a non-zero code: 3; last "
                                 "lines of the build:\n    | boom"}
    images = supply(tmp_path, engine, {"db:1": "x", "cache:1": "x"})
    with anyio.fail_after(2):
        await images.pull_missing()
        with pytest.raises(ServiceFailed) as failed:
            await images.wait("web", "shop-web")
        await images.wait("api", "api:2")
        await images.wait("db", "db:1")
    assert failed.value.service == "web"
    assert failed.value.cause.startswith("its image could not be built: build image shop-web")
    assert failed.value.cause.endswith("    | boom")


def test_build_actions_print_themselves(tmp_path: Path, context: Path) -> None:
    config = config_of(tmp_path)
    assert str(BuildAction(config, "d", "missing")) == "build image shop-web: missing"


@pytest.fixture
def anyio_backend() -> Any:
    return "asyncio"


# --- the engine's build call ------------------------------------------------------------------


class BuildClient:
    """The SDK's `build`, streaming `messages`; after `hold_after` messages it waits for
    `go` (a build step that takes its time)."""

    base_url = "http+docker://fake"

    def __init__(self, messages: list[dict[str, Any]], hold_after: int | None = None) -> None:
        self.messages, self.hold_after = messages, hold_after
        self.go, self.read_after_cancel = threading.Event(), threading.Event()
        self.kwargs: dict[str, Any] = {}
        self.archive: list[str] = []
        self.tags: list[tuple[str, str, str]] = []

    def tag(self, image: str, repository: str, tag: str) -> bool:
        self.tags.append((image, repository, tag))
        return True

    def build(self, **kwargs: Any) -> Any:
        import tarfile

        self.kwargs = kwargs
        with tarfile.open(fileobj=kwargs["fileobj"]) as tar:
            self.archive = tar.getnames()
        for index, message in enumerate(self.messages):
            if index == self.hold_after:
                self.go.wait(5)
                self.read_after_cancel.set()
            yield message


def engine_with(client: BuildClient) -> Engine:
    return Engine(client, concurrency=2)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_build_is_sent_as_asked_and_never_pulls(tmp_path: Path, context: Path) -> None:
    client = BuildClient([{"stream": "Step 1/2 : FROM base:1\n"}, {"stream": "\n"},
                          {"aux": {"ID": "sha256:built"}}, {"stream": "Successfully built\n"}])
    lines: list[str] = []
    config = config_of(tmp_path, "{context: app, args: {A: '1'}, target: build}")
    assert await engine_with(client).build(config, "d1", lines.append) == "sha256:built"
    assert lines == ["Step 1/2 : FROM base:1", "Successfully built"]
    sent = client.kwargs
    assert (sent["tag"], sent["dockerfile"], sent["buildargs"], sent["target"]) == (
        "shop-web", "Dockerfile", {"A": "1"}, "build")
    assert sent["pull"] is False and sent["custom_context"] is True
    assert sent["labels"] == {LABEL_BUILD_DIGEST: "d1", LABEL_BUILD_PROJECT: "shop"}
    assert "main.py" in client.archive and "notes.tmp" not in client.archive
    assert (sent["nocache"], sent["cache_from"], sent["network_mode"], sent["shmsize"],
            sent["extra_hosts"]) == (False, None, None, None, None)
    assert client.tags == []


@pytest.mark.anyio
async def test_the_steps_keys_are_sent_and_the_image_gets_its_extra_tags(
        tmp_path: Path, context: Path) -> None:
    client = BuildClient([{"aux": {"ID": "sha256:built"}}])
    config = config_of(tmp_path, "{context: app, cache_from: ['type=registry,ref=c/web:1'], "
                                 "no_cache: true, pull: true, network: host, shm_size: 1m, "
                                 "extra_hosts: {db.internal: 10.0.0.9}, "
                                 "tags: ['team/web:2', 'reg.local:5000/web']}")
    assert await engine_with(client).build(config, "d1") == "sha256:built"
    sent = client.kwargs
    assert (sent["pull"], sent["nocache"], sent["cache_from"], sent["network_mode"],
            sent["shmsize"], sent["extra_hosts"], sent["platform"]) == (
        True, True, ["c/web:1"], "host", 1024 * 1024, ["db.internal:10.0.0.9"], None)
    assert client.tags == [("sha256:built", "team/web", "2"),
                           ("sha256:built", "reg.local:5000/web", "latest")]


@pytest.mark.anyio
async def test_a_failed_build_says_why_with_its_last_lines(tmp_path: Path,
                                                           context: Path) -> None:
    steps = [{"stream": f"line {n}\n\n"} for n in range(30)]
    client = BuildClient([*steps, {"error": "The command returned a non-zero code: 3",
                                   "errorDetail": {"code": 3}}])
    with pytest.raises(EngineError) as failed:
        await engine_with(client).build(config_of(tmp_path), "d1")
    text = str(failed.value)
    assert text.startswith("build image shop-web: The command returned a non-zero code: 3; "
                           "last lines of the build:\n    | line 10\n")
    assert text.endswith("    | line 29") and "line 9\n" not in text


@pytest.mark.anyio
async def test_a_cancelled_build_does_not_hold_up_its_caller(tmp_path: Path,
                                                             context: Path) -> None:
    client = BuildClient([{"stream": "Step 1/2\n"}, {"stream": "Step 2/2\n"}], hold_after=1)
    engine = engine_with(client)
    with anyio.move_on_after(0.3) as scope:
        await engine.build(config_of(tmp_path), "d1")
    assert scope.cancelled_caught  # returned at the cancel, the step still going
    assert engine.unanswered() == ["build image shop-web"]
    client.go.set()  # the step ends: the thread reads its line, sees the cancel, stops
    assert client.read_after_cancel.wait(2)
    with anyio.fail_after(2):
        while engine.unanswered():
            await anyio.sleep(0.01)
