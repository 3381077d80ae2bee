"""An included definition in the form compose v2.40 compares it with the including file's.

Compose (compose-go v2.9's `include.go`, `importResource`) refuses a service, network,
volume, secret or config that an include brings when the including file defines that name
too, unless the two are deeply equal (Go's `reflect.DeepEqual`). It compares two different
things: the including file's definition as written (interpolated, its extends resolved), and
the included one as compose has loaded it, that is in canonical form (`transform.Canonical`
and `SetDefaultValues`) with its relative paths counted from the including part's folder.
So a name is one definition when the including file writes the included one's canonical
form (`depends_on: {db: {condition: service_started, required: true}}` for an included
`depends_on: [db]`), and two when both write the same short form (compose has changed one
of them). `environment` is not changed (a list and a map are two definitions), and a short
port or mount is parsed into a Go struct, which no value written in YAML equals.

Only the forms of the keys ollamatopo carries out are turned, as compose-go v2.9.1 turns them
(`transform/*.go`). Pure: the definitions are those the loader has read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESOURCE_FILES = ("secrets", "configs")  # top-level kinds with a `file`
SECRETS_FOLDER = "/run/secrets"


@dataclass(frozen=True)
class Parsed:
    """A short port or mount as compose-go parses it (a Go struct in the model): equal only
    to the same text parsed again, as two included definitions compare."""

    key: str
    text: str


@dataclass(frozen=True)
class Folders:
    """Where an included part's paths count from, and where the including part's do: the
    loader has made the part's paths absolute, compose counts them from the including
    folder (compose-go joins the part's folder, relative to it, with each path)."""

    part: Path
    including: Path

    def relative(self, text: str) -> str:
        """An absolute path of the part, as compose's model of the part has it."""
        return os.path.relpath(text, self.including) if os.path.isabs(text) else text


def canonical(kind: str, definition: Any, folders: Folders) -> Any:
    """`definition` (of the top-level section `kind`, from an included part) in the form
    compose compares it with the including file's."""
    if not isinstance(definition, dict):
        return definition
    if kind == "services":
        return _service(definition, folders)
    out = dict(definition)
    external = out.get("external")
    if isinstance(external, dict):  # the old `external: {name: N}`
        out["external"] = True
        if "name" in external and "name" not in out:
            out["name"] = external["name"]
    if kind in RESOURCE_FILES and isinstance(out.get("file"), str):
        out["file"] = folders.relative(out["file"])
    return out


def _service(spec: dict[str, Any], folders: Folders) -> dict[str, Any]:
    out = dict(spec)
    for key, turn in _TURNS.items():
        if key in out:
            out[key] = turn(out[key], folders)
    if "build" in out:
        out["build"] = _build(out["build"], folders)
    if isinstance(out.get("deploy"), dict):
        out["deploy"] = _deploy(out["deploy"])
    return out


def _deploy(deploy: dict[str, Any]) -> dict[str, Any]:
    """`resources.reservations.devices`, each with compose's default count."""
    resources = deploy.get("resources")
    if not isinstance(resources, dict):
        return deploy
    reservations = resources.get("reservations")
    if not isinstance(reservations, dict) or not isinstance(reservations.get("devices"), list):
        return deploy
    devices = [_device_request(item) for item in reservations["devices"]]
    return {**deploy, "resources": {**resources, "reservations": {**reservations,
                                                                  "devices": devices}}}


def _build(value: Any, folders: Folders) -> Any:
    build = {"context": value} if isinstance(value, str) else value
    if not isinstance(build, dict):
        return value
    context = build.get("context", str(folders.part))  # the default, ".", of the part
    return {**build, "context": folders.relative(context) if isinstance(context, str)
            else context}


def _depends_on(value: Any, _: Folders) -> Any:
    if isinstance(value, list):
        return {str(name): {"condition": "service_started", "required": True}
                for name in value}
    if isinstance(value, dict):
        return {name: {"condition": "service_started", "required": True, **options}
                if isinstance(options, dict) else options for name, options in value.items()}
    return value


def _env_files(value: Any, folders: Folders) -> Any:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return value
    out = []
    for item in items:
        entry = {"path": item} if isinstance(item, str) else item
        if isinstance(entry, dict):
            entry = {"required": True, **entry}
            if isinstance(entry.get("path"), str):
                entry["path"] = folders.relative(entry["path"])
        out.append(entry)
    return out


def _label_files(value: Any, folders: Folders) -> Any:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return value
    return [folders.relative(item) if isinstance(item, str) else item for item in items]


def _networks(value: Any, _: Folders) -> Any:
    return {str(name): None for name in value} if isinstance(value, list) else value


def _ports(value: Any, _: Folders) -> Any:
    if not isinstance(value, list):
        return value
    return [{"protocol": "tcp", "mode": "ingress", **item} if isinstance(item, dict)
            else Parsed("ports", str(item)) for item in value]


def _volumes(value: Any, folders: Folders) -> Any:
    if not isinstance(value, list):
        return value
    out: list[Any] = []
    for item in value:
        if isinstance(item, str):
            out.append(Parsed("volumes", item))
        elif isinstance(item, dict) and item.get("type") == "bind" \
                and isinstance(item.get("source"), str):
            out.append({**item, "source": folders.relative(item["source"])})
        else:
            out.append(item)
    return out


def _dns(value: Any, _: Folders) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):  # compose's OmitEmpty
        return [item for item in value if item not in (None, "")]
    return value


def _devices(value: Any, _: Folders) -> Any:
    if not isinstance(value, list):
        return value
    return [_device(item) if isinstance(item, str) else item for item in value]


def _device(text: str) -> Any:
    parts = text.split(":")
    if len(parts) > 3:
        return text  # compose refuses it ("use long syntax")
    source = parts[0]
    target = parts[1] if len(parts) > 1 and parts[1] else source
    return {"source": source, "target": target,
            "permissions": parts[2] if len(parts) == 3 else "rwm"}


def _gpus(value: Any, _: Folders) -> Any:
    if isinstance(value, str):
        return [{"count": "all"}]
    if isinstance(value, list):
        return [_device_request(item) for item in value]
    return value


def _device_request(item: Any) -> Any:
    if isinstance(item, dict) and "count" not in item and "device_ids" not in item:
        return {**item, "count": "all"}
    return item


def _secrets(value: Any, _: Folders) -> Any:
    if not isinstance(value, list):
        return value
    out: list[Any] = []
    for item in value:
        mount = {"source": item} if isinstance(item, str) else item
        if isinstance(mount, dict) and "target" not in mount:
            mount = {**mount, "target": f"{SECRETS_FOLDER}/{mount.get('source')}"}
        out.append(mount)
    return out


def _configs(value: Any, _: Folders) -> Any:
    if not isinstance(value, list):
        return value
    return [{"source": item} if isinstance(item, str) else item for item in value]


_TURNS = {"depends_on": _depends_on, "env_file": _env_files, "label_file": _label_files,
          "networks": _networks, "ports": _ports, "volumes": _volumes, "dns": _dns,
          "devices": _devices, "gpus": _gpus, "secrets": _secrets, "configs": _configs}
