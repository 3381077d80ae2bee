"""Shared helpers for the unit tests: plans written to a temporary folder, or built in memory."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from ollamatopo._errors import EXIT_INVALID, PlanError
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.plan._model import Plan


@pytest.fixture
def write_plan(tmp_path: Path) -> Callable[..., Path]:
    """Write (dedented) YAML text to a file in tmp_path and return its path."""

    def write(text: str, name: str = "plan.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def load(write_plan: Callable[..., Path]) -> Callable[..., LoadedPlan]:
    """Write a plan and load it with the given environment (empty by default)."""

    def load_text(text: str, environ: Mapping[str, str] | None = None) -> LoadedPlan:
        return load_plan(write_plan(text), dict(environ or {}))

    return load_text


@pytest.fixture
def plan_error(write_plan: Callable[..., Path]) -> Callable[..., PlanError]:
    """Write a plan that must be refused and return the PlanError raised for it."""

    def refuse(text: str, environ: Mapping[str, str] | None = None) -> PlanError:
        with pytest.raises(PlanError) as caught:
            load_plan(write_plan(text), dict(environ or {}))
        assert caught.value.exit_code == EXIT_INVALID
        return caught.value

    return refuse


@pytest.fixture
def build_plan() -> Callable[..., Plan]:
    """A validated Plan from service specs; every service in one phase, in the given order."""

    def build(services: dict[str, dict[str, Any]], networks: dict[str, Any] | None = None,
              volumes: dict[str, Any] | None = None, project: str = "shop") -> Plan:
        return Plan.model_validate({
            "project": project,
            "networks": networks or {},
            "volumes": volumes or {},
            "services": services,
            "phases": [{"name": "all", "services": list(services)}],
        })

    return build
