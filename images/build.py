"""Build the offline images the demo, the tests and the benchmarks use.

No registry is reachable, so nothing is pulled: the stand-in is `FROM scratch` plus
Debian's static busybox. Images are cached by tag and rebuilt only when their
recipe (the files of the recipe folder and the binaries copied in) changes.

    python images/build.py standin      # prints the image reference
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

import docker
import docker.errors

HERE = Path(__file__).resolve().parent
RECIPE_LABEL = "ollamatopo.recipe-hash"
IMAGE_LABEL = "ollamatopo.image"
BUSYBOX = Path("/bin/busybox")

IMAGES = {"standin": "ollamatopo-standin:latest"}


def _recipe_files(name: str) -> list[Path]:
    return sorted(path for path in (HERE / name).iterdir() if path.is_file())


def _extra_files(name: str) -> dict[str, Path]:
    if name == "standin":
        if not BUSYBOX.exists():
            sys.exit("images/build.py: /bin/busybox is missing: apt-get install busybox-static")
        return {"busybox": BUSYBOX}
    return {}


def recipe_hash(name: str) -> str:
    digest = hashlib.sha256()
    for path in [*_recipe_files(name), *_extra_files(name).values()]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_image(name: str, client: docker.DockerClient | None = None) -> str:
    """Return the reference of image `name`, building it when missing or out of date."""
    client = client or docker.from_env()
    reference = IMAGES[name]
    wanted = recipe_hash(name)
    try:
        image = client.images.get(reference)
        if (image.labels or {}).get(RECIPE_LABEL) == wanted:
            return reference
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix=f"ollamatopo-{name}-") as context:
        for path in _recipe_files(name):
            shutil.copy2(path, Path(context) / path.name)
        for target, source in _extra_files(name).items():
            shutil.copy2(source, Path(context) / target)
        client.images.build(path=context, tag=reference, rm=True, forcerm=True, pull=False,
                            labels={RECIPE_LABEL: wanted, IMAGE_LABEL: name})
    return reference


if __name__ == "__main__":
    for requested in sys.argv[1:] or list(IMAGES):
        print(ensure_image(requested))
