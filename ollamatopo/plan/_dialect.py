"""ollamatopo's own plan dialect (a file with `project:`), read for one more release.

Each dialect key that a compose file spells otherwise gets one warning naming the compose
key, so a user can move the file over key by key, or let `ollamatopo config` print the
whole compose file. Pure: a tree in, warnings out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ollamatopo.plan._compose import EXTENSION

# dialect key -> what a compose file writes instead
TOP_LEVEL = {
    "project": "name:",
    "phases": f"{EXTENSION}.phases (top level)",
}
SERVICE = {
    "after": "depends_on: {SERVICE: {condition: service_started | service_healthy | "
             "service_completed_successfully}} (healthy -> service_healthy, started -> "
             "service_started, completed -> service_completed_successfully)",
    "ready": f"healthcheck: (exec, as test: [CMD, ...]) or {EXTENSION}.ready (http, tcp, log)",
    "optional": f"{EXTENSION}.optional",
    "load_balance": f"{EXTENSION}.load_balance",
    "secrets": f"{EXTENSION}.secrets (compose's own secrets: are files mounted in "
               "/run/secrets)",
    "replicas": "deploy.replicas",
}
NETWORK = {
    "subnet": "ipam: {config: [{subnet: ...}]}",
    "gateway": "ipam: {config: [{gateway: ...}]}",
    "mtu": "driver_opts: {com.docker.network.driver.mtu: \"...\"}",
}


def dialect_warnings(tree: object) -> list[str]:
    """One warning for the file, and one per dialect key used (the first place it is)."""
    if not isinstance(tree, dict):
        return []
    warnings = ["this plan is in ollamatopo's own dialect (it has `project:`), which is read "
                "for one more release: `ollamatopo config -f FILE > compose.yaml` writes it "
                "as a compose file"]
    seen: set[str] = set()
    for where, key, instead in _dialect_keys(tree):
        if key not in seen:
            seen.add(key)
            warnings.append(f"{where}: `{key}` is ollamatopo's dialect; a compose file "
                            f"writes {instead}")
    return warnings


def _dialect_keys(tree: Mapping[Any, Any]) -> Iterator[tuple[str, str, str]]:
    for key in tree:
        if key in TOP_LEVEL:
            yield str(key), str(key), TOP_LEVEL[key]
    for kind, table in (("services", SERVICE), ("networks", NETWORK)):
        section = tree.get(kind)
        for name, spec in section.items() if isinstance(section, dict) else ():
            for key in spec if isinstance(spec, dict) else ():
                if key in table:
                    yield f"{kind}.{name}.{key}", f"{kind}.*.{key}", table[key]
