"""A service's image built from its `build:` (compose's), and the digest that says whether
the image on the engine is still what those inputs make.

The digest covers what decides the image: the context's files as the engine receives them
(.dockerignore honoured by the SDK's own matcher, the one that makes the archive sent),
each by path, kind, executable bit and content; the Dockerfile (in the context, outside
it, or inline); the args, the target, the labels, the extra tags, the platform, and what
the build's steps see (their network, extra hosts and /dev/shm size); and the id of each
local image the
Dockerfile starts `FROM`, so a rebuilt base rebuilds what stands on it. Not modification
times: a file saved again unchanged rebuilds nothing; not how the build is made either
(`cache_from`, `no_cache`, `pull`: the same inputs make the same image). The digest is a
label of the image
built (`LABEL_BUILD_DIGEST`), beside the project that built it (`LABEL_BUILD_PROJECT`,
for cleaning up by label; not `ollamatopo.project`, which every container made from the
image would inherit and so seem the project's own).

Reading the context is blocking file I/O: `build_configs` runs in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import docker.utils.build

from ollamatopo.plan._model import BuildSpec, Plan

LABEL_BUILD_DIGEST = "ollamatopo.build-digest"
LABEL_BUILD_PROJECT = "ollamatopo.build-project"
# The name a Dockerfile given inline, or kept outside the context, has in the archive.
ARCHIVED_DOCKERFILE = ".ollamatopo.Dockerfile"
CHUNK = 1 << 20


@dataclass(frozen=True)
class BuildSteps:
    """How the engine's builder runs the steps, and the names the image gets besides its
    own: compose's build keys beyond the inputs."""

    cache_from: tuple[str, ...] = ()  # images whose layers the builder may reuse
    no_cache: bool = False
    pull: bool = False  # pull the bases first (else never: a base is the engine's own)
    network: str | None = None
    shm_size: int | None = None
    extra_hosts: tuple[str, ...] = ()  # name:ip
    tags: tuple[str, ...] = ()
    platform: str | None = None  # None: the engine's own


@dataclass(frozen=True)
class BuildConfig:
    """One image to build: where from, and with what."""

    service: str  # the first service of the plan that builds it
    image: str
    project: str
    context: Path
    dockerfile: str  # its name in the archive
    dockerfile_text: str | None  # given inline or kept outside the context: sent with it
    args: Mapping[str, str]
    target: str | None
    labels: Mapping[str, str]  # the plan's own
    inputs_digest: str  # everything but the base images
    bases: tuple[str, ...]  # the images the Dockerfile starts FROM
    steps: BuildSteps = BuildSteps()

    def digest(self, image_ids: Mapping[str, str]) -> str:
        """The inputs' digest with the base images as the engine has them now (an absent
        base counts as such: the build will say it is missing)."""
        text = "\n".join([self.inputs_digest, *(f"{base}={image_ids.get(base, '')}"
                                                for base in self.bases)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def image_labels(self, digest: str) -> dict[str, str]:
        return {**self.labels, LABEL_BUILD_DIGEST: digest, LABEL_BUILD_PROJECT: self.project}

    def archive(self) -> IO[bytes]:
        """The context as the engine receives it: a tar in a temporary file, which the
        caller closes (and so removes)."""
        archive: IO[bytes] = docker.utils.build.tar(
            str(self.context), exclude=ignored(self.context),
            dockerfile=(self.dockerfile, self.dockerfile_text),
            fileobj=tempfile.TemporaryFile())  # noqa: SIM115 (returned open, see above)
        return archive


def build_configs(plan: Plan, services: Iterable[str], base: Path) -> dict[str, BuildConfig]:
    """The builds of `services` of the plan, one per image (the first service that builds
    an image decides how: replicas share theirs), for a plan in the folder `base`."""
    configs: dict[str, BuildConfig] = {}
    for name in services:
        spec = plan.services[name]
        if spec.build is not None and spec.image not in configs:
            configs[spec.image] = build_config(plan.project, name, spec.image, spec.build,
                                               base, spec.platform)
    return configs


def build_config(project: str, service: str, image: str, build: BuildSpec,
                 base: Path, platform: str | None = None) -> BuildConfig:
    """One image's build (the plan's bare args resolved already: see BuildSpec), for the
    service's `platform`, if it has one."""
    context = build.context_in(base)
    name, text = _dockerfile(build, context)
    args = {key: value for key, value in build.args.items() if value is not None}
    steps = BuildSteps(tuple(build.cache_images), build.no_cache, build.pull, build.network,
                       build.shm_size, tuple(build.extra_hosts), tuple(build.tags),
                       build.platform_for(platform))
    inputs = hashlib.sha256()
    for part in (name, text or "", repr(sorted(args.items())), build.target or "",
                 repr(sorted(build.labels.items())), context_digest(context, name),
                 *_seen_by_steps(steps)):
        inputs.update(part.encode() + b"\0")
    dockerfile_text = text if text is not None else _read(context / name)
    return BuildConfig(service, image, project, context, name, text, args, build.target,
                       dict(build.labels), inputs.hexdigest(),
                       tuple(from_images(dockerfile_text or "")), steps)


def _seen_by_steps(steps: BuildSteps) -> tuple[str, ...]:
    """What of `steps` the image depends on, for the digest; nothing when unset, so that
    an image built before these keys were taken keeps its digest."""
    parts = (steps.network or "", str(steps.shm_size or ""),
             ",".join(sorted(steps.extra_hosts)), ",".join(sorted(steps.tags)),
             steps.platform or "")
    return parts if any(parts) else ()


def _dockerfile(build: BuildSpec, context: Path) -> tuple[str, str | None]:
    """The Dockerfile's name in the archive, and its text when it must be sent along (given
    inline, or outside the context: the engine reads only the archive)."""
    if build.dockerfile_inline is not None:
        return ARCHIVED_DOCKERFILE, build.dockerfile_inline
    path = context / (build.dockerfile or "Dockerfile")
    inside = os.path.relpath(os.path.abspath(path), context)
    if inside.startswith(".." + os.sep) or inside == "..":
        return ARCHIVED_DOCKERFILE, _read(path)
    return inside, None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None  # the build says it is missing


def ignored(context: Path) -> list[str]:
    """The context's .dockerignore patterns, read as the SDK reads them."""
    try:
        lines = (context / ".dockerignore").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [line.strip() for line in lines if line.strip() and not line.strip()
            .startswith("#")]


def context_digest(context: Path, dockerfile: str) -> str:
    """The files the archive holds, by path, kind, executable bit and content. A context
    that cannot be read gives a digest of why: the build then fails and says so."""
    digest = hashlib.sha256()
    try:
        paths = sorted(docker.utils.build.exclude_paths(str(context), ignored(context),
                                                        dockerfile=dockerfile))
        for relative in paths:
            digest.update(relative.encode() + b"\0" + _entry(context / relative) + b"\0")
    except OSError as error:
        digest.update(f"unreadable: {error}".encode())
    return digest.hexdigest()


def _entry(path: Path) -> bytes:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return b"link " + os.readlink(path).encode()
    if stat.S_ISDIR(info.st_mode):
        return b"dir"
    if not stat.S_ISREG(info.st_mode):
        return b"other"
    content = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            content.update(chunk)
    executable = b"x" if info.st_mode & 0o111 else b"-"
    return b"file " + executable + content.hexdigest().encode()


_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(?P<image>\S+)(?:\s+AS\s+(?P<stage>\S+))?",
                   re.IGNORECASE)


def from_images(dockerfile: str) -> Iterable[str]:
    """The images a Dockerfile starts FROM, in order: not `scratch`, not an earlier stage,
    not a reference made of build args (its value is the engine's to find)."""
    stages: set[str] = set()
    seen: set[str] = set()
    for line in re.sub(r"\\\r?\n", " ", dockerfile).splitlines():
        match = _FROM.match(line)
        if match is None:
            continue
        image = match["image"]
        if image.lower() not in stages | {"scratch"} and "$" not in image \
                and image not in seen:
            seen.add(image)
            yield image
        if match["stage"]:
            stages.add(match["stage"].lower())
