"""Names and labels that reach the Docker engine: only what the engine takes as written.

Container names are `<project>-<service>`, networks `<project>_<network>` and volumes
`<project>_<volume>`; with every part at most 63 characters of Docker's own alphabet, each
is at most 127. Hostnames, network aliases, image references, label keys and values,
drivers and phase names are checked too, so nothing surprising is ever sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.engine._payloads import container_config, network_name, volume_name
from ollamatopo.plan._loading import LoadedPlan

Load = Callable[..., LoadedPlan]
Refuse = Callable[..., PlanError]

DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")  # moby's RestrictedNamePattern


def plan_with(service: str = "{image: x}", top: str = "") -> str:
    return f"project: p\n{top}services:\n  a: {service}\nphases: [{{name: one, services: [a]}}]\n"


@pytest.mark.parametrize(("text", "path", "fragment"), [
    # image references, by docker/distribution's grammar
    (plan_with("{image: Postgres}"), "services.a.image", "is not an image reference"),
    (plan_with("{image: 'post gres'}"), "services.a.image", "is not an image reference"),
    (plan_with("{image: 'img:'}"), "services.a.image", "is not an image reference"),
    (plan_with("{image: ':16'}"), "services.a.image", "is not an image reference"),
    (plan_with("{image: 'img@sha256:abc'}"), "services.a.image", "is not an image reference"),
    (plan_with("{image: 'a/b//c'}"), "services.a.image", "is not an image reference"),
    (plan_with(f"{{image: {'a' * 256}}}"), "services.a.image", "is not an image reference"),
    (plan_with("{image: \"nginx\\u202e\"}"), "services.a.image", "is not an image reference"),
    (plan_with("{image: ''}"), "services.a.image", "is not an image reference"),
    # hostnames and network aliases
    (plan_with(f"{{image: x, hostname: {'h' * 64}}}"), "services.a.hostname",
     "is not a valid hostname"),
    (plan_with("{image: x, hostname: 'a..b'}"), "services.a.hostname", "is not a valid hostname"),
    (plan_with("{image: x, hostname: -db}"), "services.a.hostname", "is not a valid hostname"),
    (plan_with("{image: x, hostname: 'db host'}"), "services.a.hostname",
     "is not a valid hostname"),
    (plan_with("{image: x, hostname: dé}"), "services.a.hostname", "is not a valid hostname"),
    (plan_with("{image: x, networks: {n: {aliases: ['db;rm']}}}", "networks: {n: {}}\n"),
     "services.a.networks.n.aliases[0]", "is not a valid network alias"),
    (plan_with("{image: x, networks: {n: {ipv4_address: 300.1.1.1}}}", "networks: {n: {}}\n"),
     "services.a.networks.n.ipv4_address", "is not an IPv4 address"),
    # labels on services, networks and volumes
    (plan_with("{image: x, labels: {'': v}}"), "services.a.labels", "a label key is"),
    (plan_with("{image: x, labels: {'a b': v}}"), "services.a.labels", "a label key is"),
    (plan_with("{image: x, labels: {k: \"a\\nb\"}}"), "services.a.labels",
     "without control characters"),
    (plan_with(f"{{image: x, labels: {{k: {'v' * 4097}}}}}"), "services.a.labels",
     "at most 4096"),
    (plan_with(top="networks: {n: {labels: {ollamatopo.project: other}}}\n"),
     "networks.n.labels", "are ollamatopo's own"),
    (plan_with(top="volumes: {v: {labels: {ollamatopo.run: x}}}\n"), "volumes.v.labels",
     "are ollamatopo's own"),
    # drivers, phases, replicas
    (plan_with(top="networks: {n: {driver: 'bridge; rm'}}\n"), "networks.n.driver",
     "is not a driver name"),
    (plan_with(top="volumes: {v: {driver: \"local\\n\"}}\n"), "volumes.v.driver",
     "is not a driver name"),
    ("project: p\nservices: {a: {image: x}}\nphases: [{name: \"\\e[2Jone\", services: [a]}]\n",
     "phases[0].name", "is not a phase name"),
    ("project: p\nservices:\n  " + "a" * 63 + ": {image: x, replicas: 2}\n"
     "phases: [{name: one, services: [" + "a" * 63 + "]}]\n", f"services.{'a' * 63}.replicas",
     "the replica name '" + "a" * 63 + "-2' is longer than 63 characters"),
    # the names themselves
    (plan_with().replace("  a:", "  " + "a" * 64 + ":"), "services." + "a" * 64,
     "is not a valid service name"),
    (plan_with().replace("  a:", "  -a:"), "services.-a", "is not a valid service name"),
    (plan_with().replace("  a:", "  a/b:"), "services.a/b", "is not a valid service name"),
    (plan_with().replace("  a:", "  a.:"), "services.a.", "it is also the service's host name"),
    (plan_with().replace("  a:", "  a..b:"), "services.a..b", "is also the service's host name"),
    (plan_with().replace("  a:", "  a_:"), "services.a_", "it is also the service's host name"),
    (plan_with(top="networks: {\"n\\u00e9\": {}}\n"), "networks.né",
     "is not a valid network name"),
    (plan_with(top="volumes: {\"v w\": {}}\n"), "volumes.v w", "is not a valid volume name"),
    (plan_with().replace("project: p", "project: P"), "project", "is not a valid project name"),
    (plan_with().replace("project: p", "project: p.q"), "project",
     "is not a valid project name"),
])
def test_names_the_engine_would_refuse_or_mangle_are_plan_errors(
        plan_error: Refuse, text: str, path: str, fragment: str) -> None:
    error = plan_error(text)
    assert path in [problem.path for problem in error.problems], str(error)
    assert fragment in str(error)


@pytest.mark.parametrize("image", [
    "postgres:15-alpine", "ollamamax/distributed:latest", "registry.local:5000/team/app:1.2",
    "127.0.0.1:5000/ollamatopo-pull-first:1", "localhost/a__b.c-d", "[::1]:5000/x:y",
    "x@sha256:" + "a" * 64, "Registry.Example.COM/x:Tag_1.0", "a" * 255,
])
def test_image_references_docker_takes(load: Load, image: str) -> None:
    assert load(plan_with(f"{{image: '{image}'}}")).plan.services["a"].image == image


def test_longest_names_stay_within_dockers_rules(load: Load, tmp_path: Path) -> None:
    name = "s" * 63
    loaded = load(f"""
        project: {"p" * 63}
        networks: {{{"n" * 63}: {{}}}}
        volumes: {{{"v" * 63}: {{}}}}
        services:
          {name}:
            image: x
            hostname: {"h" * 63}
            networks: {{{"n" * 63}: {{aliases: [{".".join(["d" * 63] * 3) + ".e" * 30}]}}}}
            volumes: ["{"v" * 63}:/data"]
            labels: {{com.example/{"k" * 240}: "{"v" * 4096}"}}
        phases: [{{name: "{"ph" * 50}", services: [{name}]}}]
    """)
    plan = loaded.plan
    config = container_config(plan, name, tmp_path)
    for engine_name in (config.name, network_name(plan.project, "n" * 63),
                        volume_name(plan.project, "v" * 63)):
        assert DOCKER_NAME.fullmatch(engine_name)
        assert len(engine_name) == 127


def test_replica_names_count_up_within_the_limit(load: Load) -> None:
    name = "w" * 59 + "-98"
    loaded = load(f"""
        project: p
        services:
          {name}: {{image: x, replicas: 3}}
        phases: [{{name: one, services: [{name}]}}]
    """)
    assert list(loaded.plan.services) == ["w" * 59 + "-98", "w" * 59 + "-99", "w" * 59 + "-100"]
