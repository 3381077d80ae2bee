"""A load balancer on a swarm (issue 14): its template rendered once with the backends'
swarm DNS names, given to it as a config at its config_path; a template that could not
follow the tasks is refused when the plan is loaded for a swarm."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.engine._swarm_objects import placed, with_objects
from ollamatopo.engine._swarm_payloads import service_config
from ollamatopo.plan._file_objects import digest, encoded
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.plan._model import LoadBalanceSpec
from ollamatopo.plan._templates import NO_ADDRESS, render, template_problems
from ollamatopo.run._swarm import plan_problems

NGINX = Path(__file__).resolve().parents[2] / "nginx"
SWARM_TEMPLATE = (NGINX / "nginx-swarm.conf.template").read_text()
ENGINE_TEMPLATE = (NGINX / "nginx.conf.template").read_text()
PLAN = """
name: shop
networks:
  training-net: {ipam: {config: [{subnet: 10.97.91.0/24}]}}
services:
  node: {image: node:1, networks: [training-net], deploy: {replicas: 2}}
  small: {image: node:1, networks: [training-net]}
  lb:
    image: nginx:1
    networks: [training-net]
    depends_on: [node]
    x-ollamatopo:
      load_balance: {template: TEMPLATE, port: 8080, backends: {node: 3, small: 1}}
"""


def loaded_for_swarm(tmp_path: Path, template: str,
                     replicas: dict[str, int] | None = None) -> LoadedPlan:
    (tmp_path / "lb.template").write_text(template, encoding="utf-8")
    path = tmp_path / "compose.yaml"
    path.write_text(PLAN.replace("TEMPLATE", "lb.template"), encoding="utf-8")
    return load_plan(path, environ={}, on_swarm=True, replicas=replicas)


def test_the_swarm_template_renders_a_weighted_choice_of_dns_names() -> None:
    assert template_problems(SWARM_TEMPLATE, on_swarm=True) == []
    assert template_problems(SWARM_TEMPLATE) == []  # one engine takes it too
    spec = LoadBalanceSpec(template="t", port=8080, backends={"a": 3, "b": 2, "c": 2})
    text = render(SWARM_TEMPLATE, spec, ["a", "b", "c"], ["127.0.0.1"],
                  host=lambda name: f"tasks.p_{name}")
    assert "    resolver 127.0.0.11 valid=1s ipv6=off;\n" in text
    assert ('split_clients "${request_id}" $ollamatopo_backend {\n'
            "        42.85% tasks.p_a:8080;\n"
            "        28.57% tasks.p_b:8080;\n"
            "        *      tasks.p_c:8080;\n    }") in text
    assert "proxy_pass http://$ollamatopo_backend;" in text
    lone = render(SWARM_TEMPLATE, spec, [], ["127.0.0.1"])
    assert f"* {NO_ADDRESS};" in lone  # one engine, nothing ready: 502, still valid


def test_a_template_that_resolves_once_is_refused_on_a_swarm(tmp_path: Path) -> None:
    assert "{{upstream_servers}} is resolved once" in template_problems(
        ENGINE_TEMPLATE, on_swarm=True)[0]
    with pytest.raises(PlanError) as caught:
        loaded_for_swarm(tmp_path, ENGINE_TEMPLATE)
    assert [p.path for p in caught.value.problems] == ["services.lb.load_balance.template"]
    assert "nginx-swarm.conf.template" in str(caught.value.problems[0])
    assert "{{dns_backends}} placeholder" in template_problems("{{status_allow}}",
                                                               on_swarm=True)[0]


def test_the_rendered_configuration_is_a_config_the_balancer_gets(tmp_path: Path) -> None:
    loaded = plan_problems(loaded_for_swarm(tmp_path, SWARM_TEMPLATE))
    plan = loaded.plan
    config = plan.configs["lb_load_balance"]
    assert config.value is not None and config.digest == digest(encoded(config.value))
    assert "75% tasks.shop_node:8080;\n        *   tasks.shop_small:8080;" in config.value
    assert "allow 10.97.91.0/24;" in config.value
    (grant,) = plan.services["lb"].config_files
    assert (grant.source, grant.target) == ("lb_load_balance", "/etc/nginx/nginx.conf")
    objects, problems = placed(plan, {("configs", "lb_load_balance"): encoded(config.value)},
                               [])
    assert problems == [] and objects[("configs", "lb_load_balance")].name == \
        "shop_lb_load_balance"
    swarm = with_objects(service_config(plan, "lb", tmp_path), plan, objects)
    (reference,) = swarm.create_kwargs["task_template"]["ContainerSpec"]["Configs"]
    assert reference["File"]["Name"] == "/etc/nginx/nginx.conf"


def test_scaling_a_backend_leaves_the_balancer_as_it_is(tmp_path: Path) -> None:
    """The swarm's DNS, not the configuration, says which tasks run: `scale` updates the
    backend alone, and the balancer's config (and so its service) stays."""
    before = plan_problems(loaded_for_swarm(tmp_path, SWARM_TEMPLATE))
    after = plan_problems(loaded_for_swarm(tmp_path, SWARM_TEMPLATE, {"node": 5}))
    assert after.plan.services["node"].replicas == 5
    assert after.plan.configs["lb_load_balance"] == before.plan.configs["lb_load_balance"]
    lb = after.plan.services["lb"].load_balance
    assert lb is not None and list(lb.backends) == ["node", "small"]  # not its replicas


def test_a_config_of_the_balancers_name_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "lb.template").write_text(SWARM_TEMPLATE, encoding="utf-8")
    (tmp_path / "site.conf").write_text("x", encoding="utf-8")
    path = tmp_path / "compose.yaml"
    path.write_text(PLAN.replace("TEMPLATE", "lb.template")
                    + "configs:\n  lb_load_balance: {file: ./site.conf}\n", encoding="utf-8")
    with pytest.raises(PlanError) as caught:
        plan_problems(load_plan(path, environ={}, on_swarm=True))
    assert [p.path for p in caught.value.problems] == ["configs.lb_load_balance"]
