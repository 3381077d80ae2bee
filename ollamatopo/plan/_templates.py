"""Load balancer templates: checked when the plan is loaded, rendered for the ready backends.
Pure: text in, text out."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ollamatopo.plan._model import LoadBalanceSpec

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
KNOWN = {"upstream_servers", "status_allow"}
# nginx refuses an empty upstream block; a server marked down keeps it valid and answers 502.
NO_BACKEND = "127.0.0.1:9 down"
INDENT = " " * 8


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def template_problems(template: str) -> list[str]:
    found = {name for line in template.splitlines() if not _is_comment(line)
             for name in PLACEHOLDER.findall(line)}
    problems = [f"unknown placeholder {{{{{name}}}}}: use {', '.join(sorted(KNOWN))}"
                for name in sorted(found - KNOWN)]
    if "upstream_servers" not in found:
        problems.append("the template has no {{upstream_servers}} placeholder")
    return problems


def render(template: str, spec: LoadBalanceSpec, backends: Sequence[str],
           allow: Sequence[str]) -> str:
    """The configuration for these ready backends (plan order), allowing `allow` networks."""
    servers = [f"{INDENT}server {name}:{spec.port} weight={spec.backends[name]} "
               f"{spec.server_options};".rstrip() for name in backends]
    values = {
        "upstream_servers": "\n".join(servers) or f"{INDENT}server {NO_BACKEND};",
        "status_allow": "\n".join(f"{INDENT}    allow {network};" for network in allow),
    }
    # Placeholders in comments stay as written: a multi-line value would break out of them.
    return "".join(line if _is_comment(line) else
                   PLACEHOLDER.sub(lambda match: values[match.group(1)], line)
                   for line in template.splitlines(keepends=True))
