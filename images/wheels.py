"""Build the container image of ollamatopo itself (the repository's Dockerfile), offline.

Nothing inside the build reaches a package index: the host makes a wheelhouse (the wheel
of ollamatopo from the working tree, and binary wheels of its dependencies pinned to the
versions installed in this Python environment, for the base image's Python and C library,
plus pip's own wheel to install them with) in build/wheelhouse of a temporary build
context, and the Dockerfile installs from there with `--no-index`. The base is the
offline Debian image of images/build.py unless told otherwise.

The image is cached by tag like the others: rebuilt only when its recipe changes (the
Dockerfile, .dockerignore, pyproject.toml, the package's sources, the pinned versions and
the base image's id).

    python images/wheels.py                          # build ollamatopo:local, print it
    python images/wheels.py --tag T --base IMAGE     # another tag or base
    python images/wheels.py --wheelhouse DIR         # only write the wheelhouse
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import IMAGE_LABEL, IMAGES, RECIPE_LABEL, _is_current, _lock, _patient, ensure_image

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TAG = "ollamatopo:local"
DEFAULT_BASE = IMAGES["debian"]
WHEELHOUSE = Path("build/wheelhouse")  # inside the build context; the Dockerfile's default
RECIPE_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")
PACKAGE = "ollamatopo"


@dataclass(frozen=True)
class Target:
    """What the wheels must fit: the base image's Python, C library and machine."""

    python: tuple[int, int]
    glibc: tuple[int, int]
    machine: str

    def pip_options(self) -> list[str]:
        major, minor = self.python
        platforms = [f"manylinux_2_{minor_libc}_{self.machine}"
                     for minor_libc in range(self.glibc[1], 16, -1)] if self.glibc[0] == 2 else []
        platforms += [f"manylinux2014_{self.machine}"]
        options = ["--only-binary=:all:", "--python-version", f"{major}.{minor}",
                   "--implementation", "cp", "--abi", f"cp{major}{minor}"]
        for platform in platforms:
            options += ["--platform", platform]
        return options


@dataclass(frozen=True)
class Built:
    reference: str
    seconds: float  # the whole build: wheelhouse and docker build
    wheelhouse_seconds: float
    size: int  # bytes, as `docker images` counts them (shared base layers included)
    built: bool  # False when the cached image was current


def target_of(client: docker.DockerClient, base: str) -> Target:
    """Ask the base image which Python, C library and machine it has."""
    script = ("import json, platform, sys; print(json.dumps([sys.version_info[:2], "
              "platform.libc_ver(), platform.machine()]))")
    container = client.containers.create(base, ["python3", "-c", script], entrypoint=[],
                                         network_mode="none",
                                         labels={IMAGE_LABEL: "ollamatopo-probe"})
    try:
        container.start()
        code = int(container.wait(timeout=60)["StatusCode"])
        output = container.logs(stdout=True, stderr=True)
    finally:
        container.remove(force=True)
    if code != 0:
        raise SystemExit(f"images/wheels.py: python3 in {base} exited {code}: "
                         f"{bytes(output).decode(errors='replace')[-500:]}")
    python, (libc, libc_version), machine = json.loads(bytes(output).decode())
    if libc != "glibc":
        raise SystemExit(f"images/wheels.py: {base} has no glibc ({libc!r}): no wheels fit it")
    major, minor = (int(part) for part in libc_version.split(".")[:2])
    return Target((int(python[0]), int(python[1])), (major, minor), machine)


def dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["dependencies"])


def constraints() -> str:
    """The versions of this Python environment, so the image runs what the tests ran."""
    done = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                          capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    pins = [line for line in done.stdout.splitlines()
            if line and not line.startswith(("#", "-e ")) and " @ " not in line
            and not line.lower().startswith(f"{PACKAGE}==")]
    pins.append(f"pip=={importlib.metadata.version('pip')}")
    return "\n".join(sorted(pins)) + "\n"


def _sources() -> list[Path]:
    return sorted(path for path in (ROOT / PACKAGE).rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts)


def recipe_hash(base_id: str, pins: str) -> str:
    digest = hashlib.sha256()
    for path in [*(ROOT / name for name in RECIPE_FILES), *_sources()]:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    digest.update(pins.encode())
    digest.update(base_id.encode())
    return digest.hexdigest()[:16]


def _pip(*arguments: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *arguments, "--quiet",
                    "--disable-pip-version-check"], check=True, stdin=subprocess.DEVNULL)


def write_wheelhouse(dest: Path, target: Target, pins: str | None = None) -> list[Path]:
    """ollamatopo's wheel (from a copy of the working tree, so the build writes nothing
    into the repository) and the binary wheels of its dependencies and of pip."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = constraints() if pins is None else pins
    with tempfile.TemporaryDirectory(prefix="ollamatopo-wheel-") as work:
        tree = Path(work) / "src"
        tree.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, tree / name)
        shutil.copytree(ROOT / PACKAGE, tree / PACKAGE,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _pip("wheel", "--no-deps", "--wheel-dir", str(dest), str(tree))
        constraints_file = Path(work) / "constraints.txt"
        constraints_file.write_text(pins, encoding="utf-8")
        _pip("download", "--dest", str(dest), *target.pip_options(),
             "--constraint", str(constraints_file), *dependencies(), "pip")
    return sorted(dest.glob("*.whl"))


def _version() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return str(project["version"])


def build(client: docker.DockerClient, tag: str = DEFAULT_TAG, base: str = DEFAULT_BASE,
          labels: dict[str, str] | None = None, cached: bool = True) -> Built:
    """Build the image `tag` FROM `base` (made first when it is the Debian base of
    images/build.py), with `labels` on it. With `cached`, an image of that tag with the same
    recipe is kept as it is. What the build leaves behind besides the image (the install
    stage) and the image the tag named before are removed."""
    started = time.monotonic()
    if base == DEFAULT_BASE:
        ensure_image("debian", client)
    base_id = client.images.get(base).id
    pins = constraints()
    wanted = recipe_hash(base_id, pins)
    with _lock(f"ollamatopo-{tag.replace('/', '_').replace(':', '_')}"):
        if cached and _is_current(client, tag, wanted):
            image = client.images.get(tag)
            return Built(tag, time.monotonic() - started, 0.0, int(image.attrs["Size"]), False)
        try:
            previous = client.images.get(tag).id
        except docker.errors.ImageNotFound:
            previous = None
        with tempfile.TemporaryDirectory(prefix="ollamatopo-image-") as context:
            for name in ("Dockerfile", ".dockerignore"):
                shutil.copy2(ROOT / name, Path(context) / name)
            target = target_of(client, base)
            wheels_started = time.monotonic()
            write_wheelhouse(Path(context) / WHEELHOUSE, target, pins)
            wheels_seconds = time.monotonic() - wheels_started
            created = _docker_build(client, context, tag, {"BASE": base, "VERSION": _version()},
                                    {**(labels or {}), RECIPE_LABEL: wanted})
        image = client.images.get(tag)
        if (image.labels or {}).get(RECIPE_LABEL) != wanted:
            raise RuntimeError(f"the build of {tag} did not take its labels")
        ancestors = {str(entry["Id"]).removeprefix("sha256:")[:12]
                     for entry in client.api.history(image.id)}
        _remove_quietly(client, [short for short in created[::-1] if short not in ancestors])
        if previous is not None and previous != image.id:
            _remove_quietly(client, [previous])
        return Built(tag, time.monotonic() - started, wheels_seconds, int(image.attrs["Size"]),
                     True)


STEP_RESULT = re.compile(r"^ ---> ([0-9a-f]{12})$")


def _docker_build(client: docker.DockerClient, context: str, tag: str,
                  buildargs: dict[str, str], labels: dict[str, str]) -> list[str]:
    """`docker build` through the API; return the short ids of the images the build made
    (not those it took from the cache). A failed step raises with the build's output."""
    output: list[str] = []
    created: list[str] = []
    cached_step = False
    with _patient(client):
        for chunk in client.api.build(path=context, tag=tag, rm=True, forcerm=True, pull=False,
                                      buildargs=buildargs, labels=labels, decode=True):
            if "error" in chunk:
                _remove_quietly(client, created[::-1])
                tail = "".join(output)[-3000:]
                raise RuntimeError(f"docker build of {tag} failed: {chunk['error']}\n{tail}")
            for line in str(chunk.get("stream", "")).splitlines():
                output.append(line + "\n")
                if line.strip() == "---> Using cache":
                    cached_step = True
                elif found := STEP_RESULT.match(line):
                    if not cached_step:
                        created.append(found.group(1))
                    cached_step = False
    return created


def _remove_quietly(client: docker.DockerClient, ids: list[str]) -> None:
    """Remove images that nothing else needs; one still in use stays."""
    for image_id in ids:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image_id)


def remove(client: docker.DockerClient, reference: str) -> None:
    """Remove an image this module built (its parents go with it when nothing else uses
    them)."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(reference, force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--base", default=DEFAULT_BASE)
    parser.add_argument("--wheelhouse", type=Path, help="only write the wheelhouse here")
    parser.add_argument("--no-cache", action="store_true", help="build even when current")
    options = parser.parse_args(argv)
    client = docker.from_env()
    try:
        if options.wheelhouse is not None:
            if options.base == DEFAULT_BASE:
                ensure_image("debian", client)
            wheels = write_wheelhouse(options.wheelhouse, target_of(client, options.base))
            print(f"images/wheels.py: {len(wheels)} wheels in {options.wheelhouse}",
                  file=sys.stderr)
            return 0
        made = build(client, options.tag, options.base, cached=not options.no_cache)
        if made.built:
            print(f"images/wheels.py: built {made.reference} in {made.seconds:.1f} s "
                  f"(wheelhouse {made.wheelhouse_seconds:.1f} s), {made.size / 1e6:.0f} MB",
                  file=sys.stderr)
        print(made.reference)
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
