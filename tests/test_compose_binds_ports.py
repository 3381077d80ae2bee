"""Binds and host port ranges on the real engine (issue 12), as compose v2 makes them: a
missing host folder made where compose makes it (the engine's legacy binds) and refused
with its fix where compose's mount API refuses it; SELinux relabels accepted by this engine
(it has no SELinux: it keeps the option and mounts as usual); a range of host ports for one
container port, of which the engine binds a free one for each replica, shown by `status`;
a named volume relabelled through the binds under its engine name, as compose does it;
and `docker compose create` from the same file gives its containers the same binds and
port bindings."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from pathlib import Path

from tests.conftest import Project
from tests.test_compose_referee import ENV, compose_binary
from tests.test_compose_service_keys import compose_project

__all__ = ["compose_binary", "compose_project"]  # the fixtures, used by name

BINDS = """
services:
  app:
    image: ollamatopo-standin:latest
    volumes:
      - ./made:/made
      - ./shared:/shared:z
      - ./private:/private:ro,Z
      - {type: bind, source: ./long, target: /long}
"""
REFUSED = """
services:
  base: {image: ollamatopo-standin:latest}
  app:
    image: ollamatopo-standin:latest
    depends_on: [base]
    volumes:
      - {type: bind, source: ./absent, target: /absent, bind: {}}
"""


def test_missing_folders_are_made_and_relabelled_as_compose_makes_them(
        project: Project, compose_binary: Path, compose_project: str) -> None:
    path = project.write(BINDS, "compose.yaml")
    result = project.run("up", "--plan", str(path), "--project", project.name)
    assert result.code == 0, result.stderr
    folder = project.folder
    assert all((folder / name).is_dir() for name in ("made", "shared", "private", "long"))
    app = project.containers()["app"]
    assert app.status == "running"
    binds = sorted(app.attrs["HostConfig"]["Binds"])
    assert binds == sorted([f"{folder}/made:/made:rw", f"{folder}/shared:/shared:rw,z",
                            f"{folder}/private:/private:ro,Z", f"{folder}/long:/long:rw"])
    modes = {mount["Destination"]: (mount["Mode"], mount["RW"])
             for mount in app.attrs["Mounts"]}
    assert modes["/shared"] == ("rw,z", True) and modes["/private"] == ("ro,Z", False)
    # The container writes into the folder the engine made.
    written = app.exec_run(["sh", "-c", "echo hi > /made/file"])
    assert written.exit_code == 0 and (folder / "made" / "file").read_text() == "hi\n"

    created = subprocess.run([str(compose_binary), "-f", str(path), "-p", compose_project,
                              "create"], capture_output=True, text=True, env=ENV,
                             cwd=folder, check=False, timeout=120)
    assert created.returncode == 0, created.stderr
    (theirs,) = project.client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={compose_project}"})
    assert sorted(theirs.attrs["HostConfig"]["Binds"]) == binds


def test_a_missing_folder_compose_would_not_make_is_refused_with_its_fix(
        project: Project, compose_binary: Path, compose_project: str) -> None:
    path = project.write(REFUSED, "compose.yaml")
    result = project.run("up", "--plan", str(path), "--project", project.name)
    assert result.code == 1, result.stderr
    absent = project.folder / "absent"
    assert (f"the host folder {absent} of its bind mount at /absent "
            "(services.app.volumes) does not exist") in result.stderr, result.stderr
    assert "set bind.create_host_path: true" in result.stderr
    assert not absent.exists()
    assert project.containers() == {}  # rolled back, base too

    created = subprocess.run([str(compose_binary), "-f", str(path), "-p", compose_project,
                              "create"], capture_output=True, text=True, env=ENV,
                             cwd=project.folder, check=False, timeout=120)
    assert created.returncode != 0
    assert "bind source path does not exist" in created.stderr, created.stderr
    assert not absent.exists()


VOLUME_RELABELS = """
services:
  app:
    image: ollamatopo-standin:latest
    volumes:
      - data:/shared:z
      - {type: volume, source: cache, target: /private, read_only: true, bind: {selinux: Z}}
      - data:/plain
volumes:
  data: {}
  cache: {}
"""


def test_a_named_volume_is_relabelled_through_the_binds_as_compose_does(
        project: Project, compose_binary: Path, compose_project: str) -> None:
    """compose v2 relabels a named volume through the engine's binds, under the volume's
    engine name; this engine (no SELinux) takes the option and mounts the volume."""
    path = project.write(VOLUME_RELABELS, "compose.yaml")
    result = project.run("up", "--plan", str(path), "--project", project.name)
    assert result.code == 0, result.stderr
    app = project.containers()["app"]
    assert app.status == "running"
    host = app.attrs["HostConfig"]
    binds = [f"{project.name}_data:/shared:rw,z", f"{project.name}_cache:/private:ro,Z"]
    assert sorted(host["Binds"]) == sorted(binds)
    assert [(m["Type"], m["Source"], m["Target"]) for m in host["Mounts"]] == [
        ("volume", f"{project.name}_data", "/plain")]
    names = {m["Destination"]: (m["Type"], m["Name"], m["RW"]) for m in app.attrs["Mounts"]}
    assert names["/shared"] == ("volume", f"{project.name}_data", True)
    assert names["/private"] == ("volume", f"{project.name}_cache", False)
    # the relabelled mount is the project's volume: what is written there shows at /plain
    written = app.exec_run(["sh", "-c", "echo hi > /shared/file && read line < /plain/file"
                                        " && echo $line"])
    assert (written.exit_code, written.output) == (0, b"hi\n")

    created = subprocess.run([str(compose_binary), "-f", str(path), "-p", compose_project,
                              "create"], capture_output=True, text=True, env=ENV,
                             cwd=project.folder, check=False, timeout=120)
    assert created.returncode == 0, created.stderr
    (theirs,) = project.client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={compose_project}"})
    # compose sends the unrelabelled volume through the binds too; ollamatopo through
    # the mount API (docs/compose.md)
    assert sorted(theirs.attrs["HostConfig"]["Binds"]) == sorted(
        [bind.replace(project.name, compose_project, 1) for bind in binds]
        + [f"{compose_project}_data:/plain:rw"])


PORTS = """
services:
  api:
    image: ollamatopo-standin:latest
    deploy: {replicas: 2}
    ports: ["127.0.0.1:FIRST-LAST:8080"]
    x-ollamatopo:
      ready: {http: {port: 8080, path: /health}}
"""


def free_range(count: int) -> int:
    """The first of `count` consecutive ports free on 127.0.0.1 now."""
    for first in range(31000, 32000, count):
        try:
            for port in range(first, first + count):
                with socket.socket() as held:
                    held.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError("no free range of ports between 31000 and 32000")


def test_each_replica_gets_a_free_port_of_the_range_and_status_shows_it(
        project: Project, compose_binary: Path, compose_project: str) -> None:
    first = free_range(3)
    published = f"{first}-{first + 2}"
    path = project.write(PORTS.replace("FIRST-LAST", published), "compose.yaml")
    result = project.run("up", "--plan", str(path), "--project", project.name)
    assert result.code == 0, result.stderr
    containers = project.containers()
    assert set(containers) == {"api", "api-2"}
    bound = {}
    for name, container in containers.items():
        assert container.attrs["HostConfig"]["PortBindings"] == {
            "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": published}]}
        (binding,) = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"]
        bound[name] = int(binding["HostPort"])
    assert len(set(bound.values())) == 2 and set(bound.values()) <= {first, first + 1,
                                                                     first + 2}
    for port in bound.values():  # each replica answers at the port the engine chose
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            assert answer.status == 200
    status = project.run("status", "--json", "--plan", str(path), "--project", project.name)
    assert status.code == 0, status.stderr
    rows = {row["service"]: row for row in json.loads(status.stdout)["services"]}
    for name, port in bound.items():
        assert rows[name]["ports"] == [f"127.0.0.1:{port}->8080/tcp"], rows[name]

    created = subprocess.run([str(compose_binary), "-f", str(path), "-p", compose_project,
                              "create"], capture_output=True, text=True, env=ENV,
                             cwd=project.folder, check=False, timeout=120)
    assert created.returncode == 0, created.stderr
    theirs = project.client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={compose_project}"})
    assert len(theirs) == 2
    assert all(c.attrs["HostConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": published}]} for c in theirs)
