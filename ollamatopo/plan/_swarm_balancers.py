"""A load balancer on a swarm (`x-ollamatopo.load_balance` with `--backend swarm`).

One engine writes the balancer's configuration into its container and reloads it
whenever the ready backends change (run/_balancers.py). A swarm's tasks run on nodes
whose engines ollamatopo does not reach, and they change without ollamatopo: `scale`,
and the swarm's own restarts and reschedules, also while no ollamatopo runs. So on a
swarm the balancer follows the swarm's DNS itself: its template's `{{dns_backends}}`
names each backend `tasks.<project>_<service>`, which the swarm's DNS answers with that
service's running tasks, and nginx looks it up per request (plan/_templates.py). The
rendered text then depends on the plan alone, not on which tasks run: it is rendered
once and given to the balancer's tasks as a compose config at its `config_path`, and
the swarm's config mechanism (engine/_swarm_objects.py) makes it, digests it, replaces
it when the template changes (which updates the balancer) and removes it with `down`.

Pure: the plan and its templates in, the plan with those configs out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ollamatopo._errors import PlanProblem
from ollamatopo.plan._file_objects import FIELD, KINDS, digest, encoded
from ollamatopo.plan._model import FileGrant, FileObjectSpec, Plan
from ollamatopo.plan._templates import allowed_networks, render

CONFIG_SUFFIX = "_load_balance"  # the config's key: <balancer>_load_balance


def config_key(balancer: str) -> str:
    return f"{balancer}{CONFIG_SUFFIX}"


def with_balancer_configs(plan: Plan, templates: Mapping[str, str],
                          host: Callable[[str], str]) -> tuple[Plan, list[PlanProblem]]:
    """Each balancer's configuration as a config it gets at its `config_path`
    (`host`: a backend service's DNS name on the swarm); a problem where the plan
    has that config's name or target already."""
    configs = dict(plan.configs)
    services = dict(plan.services)
    problems: list[PlanProblem] = []
    for name, spec in plan.services.items():
        balance = spec.load_balance
        if balance is None or name not in templates:
            continue
        key = config_key(name)
        if key in configs:
            problems.append(PlanProblem(f"configs.{key}", f"on a swarm this name is the "
                                        f"rendered configuration of load balancer {name}: "
                                        "give the config another name"))
            continue
        taken = [grant.target for kind in KINDS for grant in getattr(spec, FIELD[kind])]
        if balance.config_path in taken:
            problems.append(PlanProblem(f"services.{name}.load_balance.config_path",
                                        f"{balance.config_path} is also the target of one "
                                        "of its secrets or configs: give one another path"))
            continue
        text = render(templates[name], balance, list(balance.backends),
                      allowed_networks(plan, name), host=host)
        configs[key] = FileObjectSpec(content=text, value=text,
                                      digest=digest(encoded(text)))
        services[name] = spec.model_copy(update={"config_files": [
            *spec.config_files, FileGrant(source=key, target=balance.config_path)]})
    return plan.model_copy(update={"configs": configs, "services": services}), problems
