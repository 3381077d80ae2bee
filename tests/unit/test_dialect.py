"""The old dialect is read for one more release: every dialect key gets a warning naming
what a compose file writes instead."""

from __future__ import annotations

from pathlib import Path

from ollamatopo.plan._dialect import dialect_warnings
from ollamatopo.plan._loading import load_plan

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "dialect" / "plan.yaml"


def test_each_dialect_key_is_named_once_with_its_compose_key() -> None:
    loaded = load_plan(FIXTURE, environ={})
    assert not any("dialect" in w for w in loaded.warnings)  # notes of their own
    warnings = loaded.migration
    assert warnings[0].startswith("this plan is in ollamatopo's own dialect")
    named = {warning.split(":")[0]: warning for warning in warnings[1:]}
    assert "write name:" in named["project"].replace("writes", "write")
    assert "x-ollamatopo.phases" in named["phases"]
    assert "ipam" in named["networks.back.subnet"]
    assert "com.docker.network.driver.mtu" in named["networks.back.mtu"]
    assert "healthcheck" in named["services.db.ready"]
    assert "deploy.replicas" in named["services.api.replicas"]
    assert "service_healthy" in named["services.metrics.after"]
    assert "x-ollamatopo.optional" in named["services.metrics.optional"]
    assert "services.api.ready" not in named  # one warning per key, at its first place


def test_a_compose_file_gets_none() -> None:
    assert dialect_warnings(["not", "a", "mapping"]) == []
    compose = FIXTURE.parent.parent / "compose" / "training" / "compose.yaml"
    assert not load_plan(compose, environ={
        "DB_PASSWORD": "x", "JWT_SECRET": "y"}).migration
