"""Build the offline images the demo, the tests and the benchmarks use.

No registry is reachable, so nothing is pulled:

- `standin`: `FROM scratch` plus Debian's static busybox.
- `debian`: a minimal Debian root filesystem made by mmdebstrap from the host's own apt
  sources (`apt-config` says where they are; no mirror is named here) with every package
  the real services need (debian/packages.txt), turned into an image by `docker import`.
- `postgres`, `redis`, `nginx`, `prometheus`, `node`: small Dockerfiles `FROM` that base.

Images are cached by tag and rebuilt only when their recipe changes. The recipe is the
files of the recipe folder and the binaries copied in; for the base also the mmdebstrap
options and the host's apt sources; for an image built `FROM` another one of these, also
that image's id (so a rebuilt base rebuilds what stands on it).

    python images/build.py standin postgres      # prints the image references
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors

HERE = Path(__file__).resolve().parent
RECIPE_LABEL = "ollamatopo.recipe-hash"
IMAGE_LABEL = "ollamatopo.image"
BUSYBOX = Path("/bin/busybox")

IMAGES = {
    "standin": "ollamatopo-standin:latest",
    "debian": "ollamatopo-debian:bookworm",
    "postgres": "ollamatopo-postgres:demo",
    "redis": "ollamatopo-redis:demo",
    "nginx": "ollamatopo-nginx:demo",
    "prometheus": "ollamatopo-prometheus:demo",
    "node": "ollamatopo-node:demo",
}

# The base image: what mmdebstrap is given besides the host's apt sources.
BASE = "debian"
SUITE = "bookworm"
MMDEBSTRAP_OPTIONS = ("--variant=minbase", "--format=tar")
IMPORT_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["/bin/bash"]',
)
BUILD_TIMEOUT = 1800  # seconds for one Docker API call of a build or an import


def _recipe_files(name: str) -> list[Path]:
    return sorted(path for path in (HERE / name).iterdir() if path.is_file())


def _extra_files(name: str) -> dict[str, Path]:
    if name == "standin":
        if not BUSYBOX.exists():
            sys.exit("images/build.py: /bin/busybox is missing: apt-get install busybox-static")
        return {"busybox": BUSYBOX}
    return {}


def _parent(name: str) -> str | None:
    """The image of IMAGES that recipe `name`'s Dockerfile starts FROM, if any."""
    dockerfile = HERE / name / "Dockerfile"
    if not dockerfile.exists():
        return None
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM" and len(words) > 1:
            return next((known for known, ref in IMAGES.items() if ref == words[1]), None)
    return None


def _packages() -> list[str]:
    lines = (HERE / BASE / "packages.txt").read_text(encoding="utf-8").splitlines()
    return [word for line in lines for word in line.split("#", 1)[0].split()]


def host_sources() -> list[Path]:
    """The host's apt sources files, found where the host's own apt looks for them."""
    try:
        done = subprocess.run(
            ["apt-config", "shell", "LIST", "Dir::Etc::sourcelist/f",
             "PARTS", "Dir::Etc::sourceparts/d"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        sys.exit(f"images/build.py: cannot read the host's apt configuration ({error})")
    where = dict(shlex.split(line)[0].split("=", 1) for line in done.stdout.splitlines()
                 if line.strip())
    found: list[Path] = []
    listed = Path(where.get("LIST", "/etc/apt/sources.list"))
    if listed.is_file() and any(line.strip() and not line.lstrip().startswith("#")
                                for line in listed.read_text(encoding="utf-8").splitlines()):
        found.append(listed)
    parts = Path(where.get("PARTS", "/etc/apt/sources.list.d"))
    if parts.is_dir():
        found += sorted(path for path in parts.iterdir()
                        if path.is_file() and path.suffix in (".list", ".sources"))
    if not found:
        sys.exit("images/build.py: the host has no apt sources (see apt-config dump)")
    return found


def recipe_hash(name: str, parent_id: str = "") -> str:
    digest = hashlib.sha256()
    for path in [*_recipe_files(name), *_extra_files(name).values()]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    if name == BASE:
        digest.update(repr((SUITE, MMDEBSTRAP_OPTIONS, IMPORT_CHANGES)).encode())
        for path in host_sources():
            digest.update(str(path).encode())
            digest.update(path.read_bytes())
    if parent_id:
        digest.update(parent_id.encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """One build of an image at a time on this host (tests and the demo may race)."""
    path = Path(tempfile.gettempdir()) / f"ollamatopo-image-{name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _patient(client: docker.DockerClient) -> Iterator[None]:
    """Builds and imports take longer than the SDK's default 60 s API timeout."""
    before = client.api.timeout
    client.api.timeout = max(before or 0, BUILD_TIMEOUT)
    try:
        yield
    finally:
        client.api.timeout = before


def _mmdebstrap() -> str:
    found = shutil.which("mmdebstrap")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("images/build.py: mmdebstrap is missing: run `bash scripts/host-setup.sh` "
                 "or `sudo apt-get install mmdebstrap`")
    print("images/build.py: installing mmdebstrap (apt-get)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "mmdebstrap"]):
        subprocess.run(command, stdin=subprocess.DEVNULL, env=env, check=True)
    return shutil.which("mmdebstrap") or sys.exit("images/build.py: mmdebstrap did not install")


def _build_base(client: docker.DockerClient, reference: str, labels: dict[str, str]) -> None:
    """mmdebstrap a root filesystem from the host's apt sources; `docker import` it."""
    recipe = HERE / BASE
    with tempfile.TemporaryDirectory(prefix="ollamatopo-debian-") as work:
        tarball = Path(work) / "rootfs.tar"
        command = [
            _mmdebstrap(), *MMDEBSTRAP_OPTIONS,
            f"--include={','.join(_packages())}",
            f"--dpkgopt={recipe / 'dpkg.cfg'}",
            f"--customize-hook=sh {shlex.quote(str(recipe / 'customize.sh'))} \"$1\"",
            # the host's sources files as MIRROR arguments: pasted into the new sources.list
            SUITE, str(tarball), *map(str, host_sources()),
        ]
        # stdin from /dev/null: mmdebstrap reads sources from stdin when it is not a terminal
        subprocess.run(command, stdin=subprocess.DEVNULL, check=True)
        repository, tag = reference.rsplit(":", 1)
        changes = [*IMPORT_CHANGES, *(f"LABEL {key}={value}" for key, value in labels.items())]
        with _patient(client):
            client.api.import_image_from_file(str(tarball), repository=repository, tag=tag,
                                              changes=changes)
    image = client.images.get(reference)  # ImageNotFound if the import failed
    if (image.labels or {}).get(RECIPE_LABEL) != labels[RECIPE_LABEL]:
        raise RuntimeError(f"docker import of {reference} did not take its labels")


def _build_dockerfile(client: docker.DockerClient, name: str, reference: str,
                      labels: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix=f"ollamatopo-{name}-") as context:
        for path in _recipe_files(name):
            shutil.copy2(path, Path(context) / path.name)
        for target, source in _extra_files(name).items():
            shutil.copy2(source, Path(context) / target)
        with _patient(client):
            client.images.build(path=context, tag=reference, rm=True, forcerm=True,
                                pull=False, labels=labels)


def _is_current(client: docker.DockerClient, reference: str, wanted: str) -> bool:
    try:
        image = client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return (image.labels or {}).get(RECIPE_LABEL) == wanted


def ensure_image(name: str, client: docker.DockerClient | None = None) -> str:
    """Return the reference of image `name`, building it when missing or out of date."""
    client = client or docker.from_env()
    reference = IMAGES[name]
    parent = _parent(name)
    parent_id = client.images.get(ensure_image(parent, client)).id if parent else ""
    wanted = recipe_hash(name, parent_id)
    if _is_current(client, reference, wanted):
        return reference
    with _lock(name):
        if _is_current(client, reference, wanted):  # built meanwhile by someone else
            return reference
        started = time.monotonic()
        labels = {RECIPE_LABEL: wanted, IMAGE_LABEL: name}
        if name == BASE:
            _build_base(client, reference, labels)
        else:
            _build_dockerfile(client, name, reference, labels)
        size = client.images.get(reference).attrs.get("Size", 0) / 1e6
        print(f"images/build.py: built {reference} in {time.monotonic() - started:.1f} s "
              f"({size:.0f} MB)", file=sys.stderr)
    return reference


if __name__ == "__main__":
    for requested in sys.argv[1:] or list(IMAGES):
        if requested not in IMAGES:
            sys.exit(f"images/build.py: unknown image {requested!r}; known: {', '.join(IMAGES)}")
        print(ensure_image(requested))
