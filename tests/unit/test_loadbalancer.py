"""Rendering the load balancer's configuration from the template and the ready backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.plan._templates import allowed_networks, render, template_problems

TEMPLATE = (Path(__file__).resolve().parents[2] / "nginx" / "nginx.conf.template").read_text()

PLAN = """
project: shop
networks:
  training-net: {subnet: 172.21.0.0/24}
  plain: {}
services:
  n1: {image: node}
  n2: {image: node}
  n3: {image: node}
  lb:
    image: nginx
    networks: [training-net, plain]
    load_balance:
      template: TEMPLATE
      port: 8080
      backends: {n1: 3, n2: 2, n3: 2}
phases:
  - {name: nodes, services: [n1, n2, n3]}
  - {name: edge, services: [lb]}
"""


@pytest.fixture
def template_file(tmp_path: Path) -> Path:
    path = tmp_path / "lb.conf.template"
    path.write_text(TEMPLATE)
    return path


def test_the_repository_template_is_valid() -> None:
    assert template_problems(TEMPLATE) == []


def test_servers_carry_their_weights_and_options_in_plan_order(
        load: Callable[..., LoadedPlan], template_file: Path) -> None:
    loaded = load(PLAN.replace("TEMPLATE", str(template_file)))
    spec = loaded.plan.services["lb"].load_balance
    assert spec is not None and loaded.templates["lb"] == TEMPLATE
    text = render(loaded.templates["lb"], spec, ["n3", "n1"], allowed_networks(loaded.plan, "lb"))
    assert "server n3:8080 weight=2 max_fails=2 fail_timeout=10s;" in text
    assert "server n1:8080 weight=3 max_fails=2 fail_timeout=10s;" in text
    assert "n2:8080" not in text
    assert "least_conn;" in text and "keepalive 32;" in text
    assert "allow 127.0.0.1;" in text and "allow 172.21.0.0/24;" in text
    directives = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in directives if "{{" in line]


def test_placeholders_in_comments_are_left_alone(load: Callable[..., LoadedPlan],
                                                 template_file: Path) -> None:
    loaded = load(PLAN.replace("TEMPLATE", str(template_file)))
    spec = loaded.plan.services["lb"].load_balance
    assert spec is not None
    template = "# see {{status_allow}} below\nupstream u {\n{{upstream_servers}}\n}\n"
    text = render(template, spec, ["n1", "n2"], ["127.0.0.1", "10.0.0.0/8"])
    assert text.splitlines()[0] == "# see {{status_allow}} below"
    assert text.count("server ") == 2 and "allow 10.0.0.0/8" not in text
    assert template_problems("# {{bogus}}\n{{upstream_servers}}\n") == []


def test_no_ready_backend_still_renders_a_valid_upstream(load: Callable[..., LoadedPlan],
                                                         template_file: Path) -> None:
    loaded = load(PLAN.replace("TEMPLATE", str(template_file)))
    spec = loaded.plan.services["lb"].load_balance
    assert spec is not None
    text = render(TEMPLATE, spec, [], ["127.0.0.1"])
    assert "server 127.0.0.1:9 down;" in text


def test_template_errors_are_plan_errors(plan_error: Callable[..., PlanError],
                                         tmp_path: Path) -> None:
    bad = tmp_path / "bad.template"
    bad.write_text("upstream x { {{upstream_server}} }")
    error = plan_error(PLAN.replace("TEMPLATE", str(bad)))
    messages = [str(problem) for problem in error.problems]
    assert any("unknown placeholder {{upstream_server}}" in m for m in messages)
    assert all(p.path == "services.lb.load_balance.template" for p in error.problems)

    missing = plan_error(PLAN.replace("TEMPLATE", str(tmp_path / "absent.template")))
    assert "cannot read" in str(missing.problems[0])


def test_unknown_backends_are_plan_errors(plan_error: Callable[..., PlanError],
                                          template_file: Path) -> None:
    error = plan_error(PLAN.replace("TEMPLATE", str(template_file)).replace("n3: 2}", "n4: 2}"))
    assert [p.path for p in error.problems] == ["services.lb.load_balance.backends.n4"]
