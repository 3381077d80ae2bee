"""The shapes real compose files use (issue 12): the project's own fixtures under
tests/fixtures/compose/real-world/ (one shape each: web app + database stacks, monitoring,
ELK, GPU serving, Traefik labels, anchors and `<<:` merges, v3 files, every form of
healthcheck, depends_on, ports, env files, mounts...; their README says what each covers).

`plan` accepts each, or refuses it with problems that are all "not supported yet", each
naming a key that docs/compose.md lists under "Not supported yet". Any other problem is
either a wrong fixture or a bug: a fixture that shows a bug is marked xfail(strict=True)
with the bug, so that fixing it shows here. `docker compose config` accepts every one of
them (tests/test_real_world_referee.py), so a refusal of any other kind refuses a file
compose takes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ollamatopo._errors import PlanError, PlanProblem
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.report._plan_view import describe_plan, format_plan

ROOT = Path(__file__).resolve().parents[2]
REAL_WORLD = ROOT / "tests" / "fixtures" / "compose" / "real-world"
DOCS = ROOT / "docs" / "compose.md"
# compose's own names for a project's file, in its order of search
FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
NOT_YET = "not supported yet"
# Fixtures that show a bug of ollamatopo (not of the fixture): compose accepts each file.
BUGS: dict[str, str] = {}  # none known: port ranges, mount options, optional env files done


def compose_file(folder: Path) -> Path:
    return next(folder / name for name in FILE_NAMES if (folder / name).is_file())


FIXTURES = sorted(path.name for path in REAL_WORLD.iterdir() if path.is_dir())
CASES = [pytest.param(name, marks=pytest.mark.xfail(strict=True, raises=AssertionError,
                                                   reason=BUGS[name]))
         if name in BUGS else name for name in FIXTURES]


def documented_not_yet(text: str) -> set[str]:
    """The keys written in backticks in the "Not supported yet" section of docs/compose.md."""
    section = re.search(r"^## Not supported yet.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section is not None, "docs/compose.md has no \"Not supported yet\" section"
    return set(re.findall(r"`([^`]+)`", section.group(1)))


# A problem's path, without the name of the service, network, volume, secret or config.
NAMED = re.compile(r"^(?:services|networks|volumes|secrets|configs)\.[^.]+\.")


def problem_key(problem: PlanProblem) -> str:
    """The key a problem names, as the docs name keys: `build.cache_from`, `external`."""
    return re.sub(r"\[\d+\]", "", NAMED.sub("", problem.path))


def is_documented(key: str, documented: set[str]) -> bool:
    """The key, the service key it is under (`build` for build.cache_from, `deploy` for
    deploy.update_config: the docs list those as a whole) or its last part (`external` of
    a swarm secret) is listed."""
    parts = key.split(".")
    tails = {".".join(parts[i:]) for i in range(len(parts))}  # bind.selinux of volumes.bind...
    return parts[0] in documented or bool(tails & documented)


def test_every_fixture_is_a_small_file_of_its_own_shape() -> None:
    assert 15 <= len(FIXTURES) <= 30
    for name in FIXTURES:
        lines = compose_file(REAL_WORLD / name).read_text(encoding="utf-8").splitlines()
        assert 15 <= len(lines) <= 60, name
    assert set(BUGS) <= set(FIXTURES)


def test_the_docs_list_is_read() -> None:
    listed = documented_not_yet(DOCS.read_text(encoding="utf-8"))
    assert listed, "no key found in the docs' \"Not supported yet\" section"
    assert is_documented("deploy.update_config", {"deploy"})
    assert not is_documented("ports", {"deploy", "build"})
    assert problem_key(PlanProblem("services.web.build.cache_from", NOT_YET)) == \
        "build.cache_from"
    assert problem_key(PlanProblem("services.api.volumes[3]", NOT_YET)) == "volumes"


def _plan(path: Path) -> LoadedPlan:
    """What `ollamatopo plan -f PATH` does without an engine: load, then describe (text
    and JSON)."""
    loaded = load_plan(path, environ={})
    view = describe_plan(loaded, {})
    assert format_plan(view)
    json.dumps(view)
    return loaded


@pytest.mark.parametrize("name", CASES)
def test_plan_accepts_it_or_names_only_documented_keys_not_supported_yet(name: str) -> None:
    path = compose_file(REAL_WORLD / name)
    try:
        _plan(path)
    except PlanError as error:
        documented = documented_not_yet(DOCS.read_text(encoding="utf-8"))
        others = [f"{p.path} (line {p.line}): {p.message}" for p in error.problems
                  if not p.message.startswith(NOT_YET)]
        assert others == [], f"{name}: problems other than {NOT_YET!r}"
        undocumented = sorted({problem_key(p) for p in error.problems
                               if not is_documented(problem_key(p), documented)})
        assert undocumented == [], f"{name}: refused keys not listed in docs/compose.md"
