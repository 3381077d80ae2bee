"""Resource admission: a plan against the host's CPUs and memory."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ollamatopo._errors import EXIT_INVALID, ResourcesDoNotFit
from ollamatopo.plan._model import Plan
from ollamatopo.run._admission import Capacity, admit, clamp, shortfalls

G = 1024**3
HOST = Capacity(cpus=2.0, memory=8 * G)


def node(limit_cpus: str, limit_memory: str, reserved_cpus: str, reserved_memory: str) -> dict:
    return {"image": "node", "deploy": {"resources": {
        "limits": {"cpus": limit_cpus, "memory": limit_memory},
        "reservations": {"cpus": reserved_cpus, "memory": reserved_memory}}}}


@pytest.fixture
def seed_like(build_plan: Callable[..., Plan]) -> Plan:
    """Three nodes of 3 CPU / 6G (reserving 2 / 4G) and a small database."""
    return build_plan({
        "db": node("0.5", "1G", "0.25", "512M"),
        "n1": node("3", "6G", "2", "4G"),
        "n2": node("3", "6G", "2", "4G"),
        "n3": node("3", "6G", "2", "4G"),
    })


def test_a_plan_within_the_host_is_admitted(build_plan: Callable[..., Plan]) -> None:
    plan = build_plan({"db": node("0.5", "1G", "0.25", "512M"),
                       "web": node("2", "8G", "1", "2G")})
    assert shortfalls(plan, HOST) == []
    admit(plan, HOST)  # raises nothing


def test_limits_above_the_host_and_reservations_that_add_up_past_it_are_refused(
        seed_like: Plan) -> None:
    found = {s.what: (s.asked, s.available) for s in shortfalls(seed_like, HOST)}
    assert found["n1 cpu limit"] == (3.0, 2.0)
    assert "db cpu limit" not in found
    assert found["cpu reservations (total)"] == (6.25, 2.0)
    assert found["memory reservations (total)"] == (12.5 * G, 8 * G)
    with pytest.raises(ResourcesDoNotFit) as caught:
        admit(seed_like, HOST)
    assert caught.value.exit_code == EXIT_INVALID
    message = str(caught.value)
    assert "n1 cpu limit" in message and "12.5G" in message and "--clamp-resources" in message


def test_clamping_fits_the_host_and_records_every_change(seed_like: Plan) -> None:
    clamped, changes = clamp(seed_like, HOST)
    assert shortfalls(clamped, HOST) == []
    limits = clamped.services["n1"].deploy.resources.limits
    assert limits.cpus == 2.0 and limits.memory == 6 * G  # memory limit already fitted
    reserved = [s.deploy.resources.reservations for s in clamped.services.values()]
    assert sum(r.cpus or 0 for r in reserved) <= HOST.cpus
    assert sum(r.memory or 0 for r in reserved) <= HOST.memory
    described = [str(change) for change in changes]
    assert "n1 limits.cpus: 3 -> 2" in described
    assert all(change.after < change.before for change in changes)
    assert not any(change.service == "db" and change.field.startswith("limits")
                   for change in changes)


def test_clamping_a_plan_that_fits_changes_nothing(build_plan: Callable[..., Plan]) -> None:
    plan = build_plan({"db": node("0.5", "1G", "0.25", "512M")})
    clamped, changes = clamp(plan, HOST)
    assert changes == [] and clamped == plan
