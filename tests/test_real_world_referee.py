"""Compose v2 as the referee of the real-world shapes (issue 12): every fixture under
tests/fixtures/compose/real-world/ passes `docker compose config`, and for each one that
ollamatopo accepts (tests/unit/test_real_world_shapes.py) both resolve the same model: the
general one of tests/test_compose_referee.py (images, commands, environment, ports,
mounts, networks, dependencies and conditions, healthchecks, limits...), the engine-level
keys of tests/test_compose_referee_keys.py (ulimits, sysctls, logging, devices, GPUs,
restart policies...), user, hostname, capabilities and security options, and each
service's replica count. No engine is needed.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.plan._loading import LoadedPlan, load_plan
from tests.test_compose_referee import compose_binary, our_model, theirs
from tests.test_compose_referee_files import compose_model
from tests.test_compose_referee_keys import our_keys, their_keys
from tests.unit.test_real_world_shapes import FIXTURES, REAL_WORLD, compose_file

__all__ = ["compose_binary"]  # the referee's fixture, used by name


def _accepted(path: Path) -> LoadedPlan | None:
    try:
        return load_plan(path, environ={})
    except PlanError:
        return None  # the unit test judges its problems


def _their_document(document: dict[str, Any], project: str) -> dict[str, Any]:
    """compose's output as the models read it: `$` written `$$` in labels too (compose_model
    reads commands and healthchecks back), and a built service's image named as compose
    names it (`<project>-<service>`; `config` leaves it out)."""
    document = copy.deepcopy(document)
    for name, spec in document["services"].items():
        spec["labels"] = {key: value.replace("$$", "$")
                          for key, value in (spec.get("labels") or {}).items()}
        if "build" in spec:
            spec.setdefault("image", f"{project}-{name}")
    return document


def _general(loaded: LoadedPlan, document: dict[str, Any]) -> tuple[Any, Any]:
    """The general models of both, for the services as written (not replicas' copies),
    without what _keys compares (restart, deploy's devices and pids) and without the
    networks of a service that has a network_mode (compose lists none, the helper our
    default one). Bind sources through their symlinks on both sides (the helper resolves
    ours; compose keeps `/var/run/...` and a trailing `/`)."""
    stripped = copy.deepcopy(document)
    for spec in stripped["services"].values():
        resources = (spec.get("deploy") or {}).get("resources") or {}
        (resources.get("reservations") or {}).pop("devices", None)
        (resources.get("limits") or {}).pop("pids", None)
    ours, theirs_ = our_model(loaded.path, {}), compose_model(stripped)
    assert loaded.declared is not None
    ours["services"] = {name: spec for name, spec in ours["services"].items()
                        if name in loaded.declared.services}
    for name, spec in loaded.declared.services.items():
        for model in (ours, theirs_):
            service = model["services"][name]
            service.pop("restart")
            if spec.network_mode is not None:
                service.pop("networks")
            service["mounts"] = {(kind, os.path.realpath(source) if kind == "bind" else source,
                                  target, read_only)
                                 for kind, source, target, read_only in service["mounts"]}
        for kind in ("limits", "reservations"):
            ours["services"][name][kind].pop("devices", None)
            ours["services"][name][kind].pop("pids", None)
    return ours, theirs_


def _keys(loaded: LoadedPlan, document: dict[str, Any]) -> tuple[Any, Any]:
    assert loaded.declared is not None
    return ({name: keys for name, keys in our_keys(loaded.path).items()
             if name in loaded.declared.services}, their_keys(document))


# Service keys neither helper compares, kept by both as written.
AS_WRITTEN = ("user", "hostname", "cap_add", "cap_drop", "security_opt")


def _as_written(loaded: LoadedPlan, document: dict[str, Any]) -> tuple[Any, Any]:
    assert loaded.declared is not None
    return ({name: {key: getattr(spec, key) or None for key in AS_WRITTEN}
             for name, spec in loaded.declared.services.items()},
            {name: {key: spec.get(key) or None for key in AS_WRITTEN}
             for name, spec in document["services"].items()})


HOOKS = ("post_start", "pre_stop")


def _hooks(loaded: LoadedPlan, document: dict[str, Any]) -> tuple[Any, Any]:
    """compose's lifecycle hooks as both hold them (compose's JSON keeps `$$`)."""
    assert loaded.declared is not None
    ours = {name: {moment: [hook.model_dump(exclude_defaults=True)
                            for hook in getattr(spec, moment)] for moment in HOOKS}
            for name, spec in loaded.declared.services.items()}
    theirs_ = {name: {moment: [{**hook, "command": [part.replace("$$", "$")
                                                    for part in hook["command"]]}
                               for hook in spec.get(moment) or []] for moment in HOOKS}
               for name, spec in document["services"].items()}
    return ours, theirs_


def _replicas(loaded: LoadedPlan, document: dict[str, Any]) -> tuple[Any, Any]:
    assert loaded.declared is not None
    return ({name: spec.replicas for name, spec in loaded.declared.services.items()},
            {name: int((spec.get("deploy") or {}).get("replicas", spec.get("scale", 1)))
             for name, spec in document["services"].items()})


@pytest.mark.parametrize("name", FIXTURES)
def test_compose_and_ollamatopo_resolve_the_same_model(compose_binary: Path, name: str) -> None:
    path = compose_file(REAL_WORLD / name)
    document = theirs(compose_binary, path, {})  # compose takes every fixture
    loaded = _accepted(path)
    if loaded is None:
        pytest.skip("refused by ollamatopo (tests/unit/test_real_world_shapes.py judges why)")
    document = _their_document(document, loaded.plan.project)
    for compared in (_general, _keys, _as_written, _hooks, _replicas):
        ours, theirs_ = compared(loaded, document)
        assert ours == theirs_, compared.__name__
