"""Compose v2 as the referee of `extends` and `include` (issue 12): for the fixtures under
tests/fixtures/compose/extends/ (a base in the same file, a chain, bases in other files with
their own relative paths, a chain across three files) and tests/fixtures/compose/include/ (a
part with its own .env and folder, a nested include, a part of two files with its own
project_directory and env_file), `docker compose config` and ollamatopo resolve the same
model, with the environment each file is interpolated with; what `ollamatopo config` prints
means the same to compose; and what compose refuses (cycles, a missing file, a name defined
twice, the same short form in a file and its include), ollamatopo refuses too; and the
tags `!reset` and `!override` (tests/fixtures/compose/tags/) mean the same to both. No engine
is needed: `config` only reads files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ollamatopo._errors import PlanError
from ollamatopo.plan._loading import load_plan
from tests.conftest import ROOT
from tests.test_compose_referee import (
    ENV,
    FIXTURES,
    compose_binary,
    our_model,
    their_model,
    theirs,
)

__all__ = ["compose_binary"]  # the referee's fixture, used by name below

CASES = [
    ("extends", {}),
    ("extends", {"REGION": "us", "CACHE_SIZE": "128mb"}),
    ("include", {}),
    ("include", {"SHARED": "from-shell", "SCRAPE": "9s", "PG_TAG": "16"}),
]
IDS = ["extends", "extends-env", "include", "include-env"]


def compose_model(document: dict[str, Any]) -> dict[str, Any]:
    """their_model, with compose's `$$` (how its output writes a literal `$`) read back in
    commands and healthchecks too, where the fixtures keep literal dollars."""
    for spec in document["services"].values():
        for key in ("command", "entrypoint"):
            if spec.get(key):
                spec[key] = [part.replace("$$", "$") for part in spec[key]]
        if (spec.get("healthcheck") or {}).get("test"):
            spec["healthcheck"]["test"] = [part.replace("$$", "$")
                                           for part in spec["healthcheck"]["test"]]
    return their_model(document)


@pytest.mark.parametrize(("fixture", "env"), CASES, ids=IDS)
def test_compose_and_ollamatopo_resolve_extends_and_include_alike(
        compose_binary: Path, fixture: str, env: dict[str, str]) -> None:
    path = FIXTURES / fixture / "compose.yaml"
    assert our_model(path, env) == compose_model(theirs(compose_binary, path, env))


@pytest.mark.parametrize(("fixture", "env"), CASES, ids=IDS)
def test_ollamatopo_config_means_to_compose_what_the_files_mean(
        compose_binary: Path, fixture: str, env: dict[str, str], tmp_path: Path) -> None:
    """`ollamatopo config` prints the resolved plan: read by compose, it is the model compose
    makes of the original files (extends and include resolved, paths absolute)."""
    path = FIXTURES / fixture / "compose.yaml"
    environment = {**ENV, **env, "PYTHONPATH": str(ROOT),
                   "OLLAMATOPO_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "ollamatopo", "config", "-f", str(path)],
                          capture_output=True, text=True, env=environment, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    printed = tmp_path / "compose.yaml"
    printed.write_text(done.stdout, encoding="utf-8")
    document = yaml.safe_load(done.stdout)
    assert "include" not in document
    assert not any("extends" in spec for spec in document["services"].values())
    assert compose_model(theirs(compose_binary, printed, {})) == \
        compose_model(theirs(compose_binary, path, env))


TAGS = [(), ("compose.override.yaml",)]


@pytest.mark.parametrize("overrides", TAGS, ids=["tags", "tags-override"])
def test_compose_and_ollamatopo_read_reset_and_override_alike(
        compose_binary: Path, overrides: tuple[str, ...]) -> None:
    """tests/fixtures/compose/tags/: `!reset` and `!override` in an -f file, under extends,
    in an include's path list, in list items and through a merge key; and a definition the
    include brings repeated in canonical form, one definition to both tools."""
    path = FIXTURES / "tags" / "compose.yaml"
    assert our_model(path, {}, overrides) == \
        compose_model(theirs(compose_binary, path, {}, overrides))


@pytest.mark.parametrize("overrides", TAGS, ids=["tags", "tags-override"])
def test_ollamatopo_config_of_tagged_files_means_to_compose_what_they_mean(
        compose_binary: Path, overrides: tuple[str, ...], tmp_path: Path) -> None:
    path = FIXTURES / "tags" / "compose.yaml"
    files = [arg for name in (path.name, *overrides) for arg in ("-f", str(path.parent / name))]
    environment = {**ENV, "PYTHONPATH": str(ROOT), "OLLAMATOPO_STATE_DIR": str(tmp_path / "s")}
    done = subprocess.run([sys.executable, "-m", "ollamatopo", "config", *files],
                          capture_output=True, text=True, env=environment, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    printed = tmp_path / "tags" / "compose.yaml"  # the same folder name: the same project
    printed.parent.mkdir()
    printed.write_text(done.stdout, encoding="utf-8")
    assert compose_model(theirs(compose_binary, printed, {})) == \
        compose_model(theirs(compose_binary, path, {}, overrides))


A_EXTENDS_B = "services:\n  a: {extends: {service: b, file: sub/b.yaml}}\n"
REFUSED = {
    "extends-cycle": {
        "compose.yaml": A_EXTENDS_B,
        "sub/b.yaml": "services:\n  b: {extends: {service: a, file: ../compose.yaml}}\n"},
    "extends-missing-file": {"compose.yaml": A_EXTENDS_B},
    "extends-missing-service": {"compose.yaml": "services:\n  a: {image: a, extends: nope}\n"},
    "extends-from-an-include": {
        "compose.yaml": "include: [inc.yaml]\nservices:\n  a: {extends: base}\n",
        "inc.yaml": "services:\n  base: {image: b}\n"},
    "include-cycle": {
        "compose.yaml": "include: [sub/compose.yaml]\nservices:\n  a: {image: a}\n",
        "sub/compose.yaml": "include: [../compose.yaml]\nservices:\n  b: {image: b}\n"},
    "include-missing-file": {
        "compose.yaml": "include: [gone.yaml]\nservices:\n  a: {image: a}\n"},
    "include-conflict": {
        "compose.yaml": "include: [inc.yaml]\nservices:\n  db: {image: db:1}\n",
        "inc.yaml": "services:\n  db: {image: db:2}\n"},
    "include-short-forms-twice": {  # compose has made the included one canonical
        "compose.yaml": "include: [inc.yaml]\nservices:\n  db: {image: d, depends_on: [c]}\n",
        "inc.yaml": "services:\n  db: {image: d, depends_on: [c]}\n  c: {image: c}\n"},
    "include-short-port-twice": {
        "compose.yaml": "include: [inc.yaml]\nservices:\n  db: {image: d, ports: ['1:1']}\n",
        "inc.yaml": "services:\n  db: {image: d, ports: ['1:1']}\n"},
    "include-missing-env-file": {
        "compose.yaml": "include:\n  - {path: inc.yaml, env_file: x.env}\n",
        "inc.yaml": "services:\n  db: {image: db:1}\n"},
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_compose_refuses_ollamatopo_refuses(compose_binary: Path, case: str,
                                                 tmp_path: Path) -> None:
    for name, text in REFUSED[case].items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    path = tmp_path / "compose.yaml"
    done = subprocess.run([str(compose_binary), "-f", str(path), "config"],
                          capture_output=True, text=True, env=ENV, check=False, timeout=120)
    assert done.returncode != 0, done.stdout
    with pytest.raises(PlanError):
        load_plan(path, environ={})


def test_the_same_definition_in_a_file_and_its_include_is_one_for_both(
        compose_binary: Path, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("include: [inc.yaml]\n"
                                           "services:\n  db: {image: db:1}\n", encoding="utf-8")
    (tmp_path / "inc.yaml").write_text("services:\n  db: {image: db:1}\n", encoding="utf-8")
    path = tmp_path / "compose.yaml"
    assert our_model(path, {}) == compose_model(theirs(compose_binary, path, {}))
