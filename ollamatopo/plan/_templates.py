"""Load balancer templates: checked when the plan is loaded, rendered for the backends.
Pure: text in, text out.

Two ways for a template to name the backends:
- `{{upstream_servers}}`: one `server` line per ready backend, inside the template's
  `upstream` block. nginx resolves those names when it loads the file, so the balancer
  follows the backends only when it is written again and reloaded: one engine does that
  (run/_balancers.py) whenever the set of ready backends changes.
- `{{dns_backends}}`: nginx's resolver (Docker's DNS in the container) and a variable,
  `$ollamatopo_backend`, naming one backend per request by weight, for `proxy_pass
  http://$ollamatopo_backend;`. nginx then looks the name up at request time, at most
  DNS_VALID_S old, and picks among its addresses; a refused connection goes to the
  next address (`proxy_next_upstream error`). On a swarm the name is
  `tasks.<project>_<service>`, which the swarm's DNS answers with the service's running
  tasks: the balancer follows `scale` and the swarm's own restarts without being written
  again (docs/swarm.md), so a swarm takes only this form.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ollamatopo.plan._model import LoadBalanceSpec, Plan

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
KNOWN = {"upstream_servers", "dns_backends", "status_allow"}
BACKENDS = ("upstream_servers", "dns_backends")  # a template needs one of them
# nginx refuses an empty upstream block; a server marked down keeps it valid and answers 502.
NO_BACKEND = "127.0.0.1:9 down"
NO_ADDRESS = "127.0.0.1:9"  # nothing listens: a request answers 502
INDENT = " " * 8
HTTP_INDENT = " " * 4  # {{dns_backends}} goes in the http block
RESOLVER = "127.0.0.11"  # Docker's embedded DNS, in a container on a user-defined network
DNS_VALID_S = 1  # how long nginx keeps an answer: the lag of the balancer behind the DNS
BACKEND_VARIABLE = "$ollamatopo_backend"


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def template_problems(template: str, *, on_swarm: bool = False) -> list[str]:
    found = {name for line in template.splitlines() if not _is_comment(line)
             for name in PLACEHOLDER.findall(line)}
    problems = [f"unknown placeholder {{{{{name}}}}}: use {', '.join(sorted(KNOWN))}"
                for name in sorted(found - KNOWN)]
    if on_swarm:
        if "upstream_servers" in found:
            problems.append("{{upstream_servers}} is resolved once, when nginx loads the "
                            "file, and a swarm's tasks change without a reload: use "
                            "{{dns_backends}} and proxy_pass http://$ollamatopo_backend; "
                            "(nginx/nginx-swarm.conf.template)")
        elif "dns_backends" not in found:
            problems.append("the template has no {{dns_backends}} placeholder, which a swarm "
                            "needs (nginx/nginx-swarm.conf.template)")
    elif not found & set(BACKENDS):
        problems.append("the template has no {{upstream_servers}} (or {{dns_backends}}) "
                        "placeholder")
    return problems


def allowed_networks(plan: Plan, service: str) -> list[str]:
    """Loopback and the subnets of the networks the load balancer is on."""
    subnets = [plan.networks[key].subnet for key in plan.services[service].networks
               if key in plan.networks and plan.networks[key].subnet]
    return ["127.0.0.1", *(subnet for subnet in subnets if subnet)]


def render(template: str, spec: LoadBalanceSpec, backends: Sequence[str],
           allow: Sequence[str], *, host: Callable[[str], str] = str) -> str:
    """The configuration for these backends (plan order: one engine's ready ones, a
    swarm's all), allowing `allow` networks; `host`: a backend's DNS name."""
    servers = [f"{INDENT}server {host(name)}:{spec.port} weight={spec.backends[name]} "
               f"{spec.server_options};".rstrip() for name in backends]
    values = {
        "upstream_servers": "\n".join(servers) or f"{INDENT}server {NO_BACKEND};",
        "dns_backends": _dns_backends(spec, backends, host),
        "status_allow": "\n".join(f"{INDENT}    allow {network};" for network in allow),
    }
    # Placeholders in comments stay as written: a multi-line value would break out of them.
    return "".join(line if _is_comment(line) else
                   PLACEHOLDER.sub(lambda match: values[match.group(1)], line)
                   for line in template.splitlines(keepends=True))


def _dns_backends(spec: LoadBalanceSpec, backends: Sequence[str],
                  host: Callable[[str], str]) -> str:
    """The resolver, and `$ollamatopo_backend` as `host:port` of one backend, chosen per
    request by `split_clients` in proportion to the weights (a service's weight goes to
    its tasks together: DNS names no task apart)."""
    addresses = [f"{host(name)}:{spec.port}" for name in backends] or [NO_ADDRESS]
    total = sum(spec.backends[name] for name in backends)
    shares = [f"{_percent(spec.backends[name], total)}%" for name in backends[:-1]]
    width = max(map(len, [*shares, "*"]))
    lines = [f"resolver {RESOLVER} valid={DNS_VALID_S}s ipv6=off;",
             f'split_clients "${{request_id}}" {BACKEND_VARIABLE} {{',
             *(f"    {share:<{width}} {address};"
               for share, address in zip([*shares, "*"], addresses, strict=True)),
             "}"]
    return "\n".join(f"{HTTP_INDENT}{line}" for line in lines)


def _percent(weight: int, total: int) -> str:
    """nginx takes hundredths of a percent; never 0 (nginx refuses it), rounded down so
    that the shares leave the last backend its own (`*`)."""
    hundredths = max(weight * 10000 // total, 1)
    return f"{hundredths / 100:.2f}".rstrip("0").rstrip(".")
