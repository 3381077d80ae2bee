"""An included definition in compose's canonical form (issue 12), pure: the form compose v2
compares with the including file's definition of the same name (_compose_canonical).
tests/test_compose_referee_files.py checks a repeated definition against compose v2."""

from __future__ import annotations

from pathlib import Path

from ollamatopo.plan._compose_canonical import Folders, Parsed, canonical

FOLDERS = Folders(Path("/p/part"), Path("/p"))


def test_short_forms_become_the_long_forms_compose_loads() -> None:
    service = canonical("services", {
        "image": "db:1",
        "depends_on": ["cache"],
        "networks": ["default"],
        "secrets": ["token"],
        "configs": ["conf"],
        "dns": "1.1.1.1",
        "devices": ["/dev/fuse"],
    }, FOLDERS)
    assert service == {
        "image": "db:1",
        "depends_on": {"cache": {"condition": "service_started", "required": True}},
        "networks": {"default": None},
        "secrets": [{"source": "token", "target": "/run/secrets/token"}],
        "configs": [{"source": "conf"}],
        "dns": ["1.1.1.1"],
        "devices": [{"source": "/dev/fuse", "target": "/dev/fuse", "permissions": "rwm"}],
    }


def test_long_forms_get_compose_defaults_and_keep_what_is_written() -> None:
    service = canonical("services", {
        "depends_on": {"db": {"condition": "service_healthy"}},
        "ports": [{"target": 80}],
        "gpus": "all",
    }, FOLDERS)
    assert service["depends_on"] == {"db": {"condition": "service_healthy", "required": True}}
    assert service["ports"] == [{"target": 80, "protocol": "tcp", "mode": "ingress"}]
    assert service["gpus"] == [{"count": "all"}]


def test_a_short_port_or_mount_equals_only_itself_parsed() -> None:
    service = canonical("services", {"ports": ["80:80"], "volumes": ["data:/data"]}, FOLDERS)
    assert service["ports"] == [Parsed("ports", "80:80")]
    assert service["ports"] != ["80:80"]  # what the including file writes never equals it
    assert service["volumes"] == [Parsed("volumes", "data:/data")]


def test_paths_count_from_the_including_folder() -> None:
    service = canonical("services", {
        "build": "/p/part",
        "env_file": "/p/part/a.env",
        "label_file": ["/p/part/l"],
        "volumes": [{"type": "bind", "source": "/p/part/data", "target": "/d"}],
    }, FOLDERS)
    assert service["build"] == {"context": "part"}
    assert service["env_file"] == [{"path": "part/a.env", "required": True}]
    assert service["label_file"] == ["part/l"]
    assert service["volumes"] == [{"type": "bind", "source": "part/data", "target": "/d"}]
    assert canonical("services", {"build": {"dockerfile": "D"}}, FOLDERS)["build"] == \
        {"dockerfile": "D", "context": "part"}
    assert canonical("secrets", {"file": "/p/part/s.txt"}, FOLDERS) == {"file": "part/s.txt"}


def test_environment_is_not_turned_and_other_values_are_as_written() -> None:
    service = {"environment": ["A=1"], "image": "a"}
    assert canonical("services", service, FOLDERS) == service
    assert canonical("networks", None, FOLDERS) is None


def test_the_old_external_name_form() -> None:
    assert canonical("volumes", {"external": {"name": "data"}}, FOLDERS) == \
        {"external": True, "name": "data"}
    assert canonical("volumes", {"external": True}, FOLDERS) == {"external": True}
