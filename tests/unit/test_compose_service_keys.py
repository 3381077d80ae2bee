"""Compose's engine-level service keys without an engine (issue 12): what each form becomes
in the plan, what compose refuses and so ollamatopo too, the Engine API payload (keys only
when used, so old containers keep their hash), the implied dependencies of a service that
uses another's container, and the images' pull_policy and platform."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from ollamatopo._errors import EngineError, PlanError, ServiceFailed
from ollamatopo.engine._docker import ImageFacts, _plain
from ollamatopo.engine._payloads import container_config
from ollamatopo.engine._snapshot import ObservedContainer, Snapshot
from ollamatopo.plan._container import platform_matches, refresh_seconds
from ollamatopo.plan._loading import LoadedPlan, load_plan
from ollamatopo.plan._model import Condition
from ollamatopo.report._recorder import RunRecorder
from ollamatopo.run._image_policy import ImageWants, image_wants
from ollamatopo.run._reconcile import Verb, reconcile
from ollamatopo.run._supplies import ImageSupply


def load(tmp_path: Path, text: str, name: str = "compose.yaml") -> LoadedPlan:
    folder = tmp_path / "keys"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return load_plan(folder / name, environ={})


def refused(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PlanError) as caught:
        load(tmp_path, text)
    return [str(problem) for problem in caught.value.problems]


def payload(tmp_path: Path, text: str, service: str = "a") -> dict[str, Any]:
    loaded = load(tmp_path, text)
    return container_config(loaded.plan, service, loaded.path.parent).create_kwargs


# --- the plan --------------------------------------------------------------------------------


def test_each_form_becomes_the_plans_setting(tmp_path: Path) -> None:
    spec = load(tmp_path, """
services:
  a:
    image: x:1
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    sysctls: [net.core.somaxconn=1024]
    shm_size: 1g
    logging: {driver: json-file, options: {max-size: 1m, max-file: 3}}
    dns: 9.9.9.9
    dns_search: example.com
    devices: ["/dev/null", "/dev/zero:/dev/z", "/dev/full:/dev/f:r"]
    group_add: [audio, 1000]
    gpus: all
    memswap_limit: -1
    pull_policy: if_not_present
""").plan.services["a"]
    assert {key: (limit.soft, limit.hard) for key, limit in spec.ulimits.items()} == {
        "nofile": (1024, 2048), "nproc": (512, 512)}
    assert spec.sysctls == {"net.core.somaxconn": "1024"}
    assert spec.shm_size == 2**30
    assert spec.logging is not None and spec.logging.options == {"max-size": "1m",
                                                                 "max-file": "3"}
    assert (spec.dns, spec.dns_search) == (["9.9.9.9"], ["example.com"])
    assert [str(device) for device in spec.devices] == [
        "/dev/null:/dev/null:rwm", "/dev/zero:/dev/z:rwm", "/dev/full:/dev/f:r"]
    assert spec.group_add == ["audio", "1000"]
    assert [request.engine_count for request in spec.gpus] == [-1]
    assert spec.memswap_limit == -1
    assert spec.pull_policy == "missing"  # compose-go's name for if_not_present


@pytest.mark.parametrize(("text", "words"), [
    ("ulimits: {nofile: {soft: 20, hard: 10}}", "soft limit 20 is above hard limit 10"),
    ("devices: [/dev/null:/dev/x:rwx]", "is not a device's permissions"),
    ("dns: [not-an-ip]", "is not an IP address of a DNS server"),
    ("network_mode: somewhere", "is not a network_mode"),
    ("pid: private", "is not a pid"),
    ("pull_policy: build", "pull_policy build is not supported yet"),
    ("pull_policy: hourly", "is not a pull policy"),
    ("gpus: [{count: 1, device_ids: ['0']}]", "count and device_ids exclude each other"),
    ("mac_address: 02:42", "mac_address"),
    ("stop_signal: 'kill -9'", "stop_signal"),
    ("cpu_period: 500", "cpu_period"),
    ("cpu_quota: 999", "below the engine's smallest CPU quota"),
    ("mem_swappiness: 101", "mem_swappiness"),
    ("cpu_rt_period: 1000\n    cpu_rt_runtime: 2000", "cpu_rt_runtime 2000 is above cpu_rt_period"),
    ("blkio_config: {weight: 5}", "blkio_config.weight"),
    ("blkio_config: {device_read_bps: [{path: sda, rate: 1mb}]}", "blkio_config.device_read_bps"),
    ("device_cgroup_rules: ['c 1:3']", "is not a device cgroup rule"),
    ("scale: -1", "replicas"),
])
def test_a_wrong_value_is_a_problem_at_its_key(tmp_path: Path, text: str, words: str) -> None:
    problems = refused(tmp_path, f"services:\n  a:\n    image: x:1\n    {text}\n")
    assert any(words in problem for problem in problems), problems


@pytest.mark.parametrize(("text", "words"), [
    # compose-go refuses these too
    ("network_mode: host\n    networks: [back]", "network_mode and networks exclude each other"),
    ("mem_limit: 1g\n    deploy: {resources: {limits: {memory: 2g}}}",
     "mem_limit differs from deploy.resources.limits.memory"),
    ("cpus: 1\n    deploy: {resources: {limits: {memory: 1g}}}",
     "cpus differs from deploy.resources.limits.cpus"),
    ("mem_reservation: 1g\n    deploy: {resources: {reservations: {cpus: 1}}}",
     "mem_reservation differs from deploy.resources.reservations.memory"),
    ("network_mode: service:ghost", "unknown service 'ghost'"),
    ("volumes_from: [ghost:ro]", "unknown service 'ghost'"),
    ("network_mode: service:a", "a service cannot use its own container"),
    # the engine refuses these
    ("network_mode: service:b\n    ports: ['80:80']", "cannot have ports of its own"),
    ("network_mode: container:other\n    hostname: h", "cannot have hostname of its own"),
    ("network_mode: service:b\n    x-ollamatopo: {ready: {tcp: {port: 80}}}",
     "ready.tcp (probe with exec"),
    ("deploy: {restart_policy: {condition: any, max_attempts: 2}}",
     "max_attempts goes with condition: on-failure"),
    # not carried out yet
    ("scale: 2\n    deploy: {replicas: 3}", "scale 2 differs from deploy.replicas 3"),
    ("annotations: {a: b}", "services.a.annotations (line 6): not supported yet"),
    ("deploy: {mode: replicated-job}", "services.a.deploy.mode (line 6): not supported yet"),
    ("deploy: {resources: {reservations: {devices: [{count: 1}]}}}", "capabilities"),
])
def test_what_compose_or_the_engine_refuses_is_a_problem(tmp_path: Path, text: str,
                                                          words: str) -> None:
    problems = refused(tmp_path, f"""
networks: {{back: {{}}}}
services:
  a:
    image: x:1
    {text}
  b: {{image: x:1}}
""")
    assert any(words in problem for problem in problems), problems


def test_deploy_restart_policy_wins_and_swarm_keys_warn(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  a:
    image: x:1
    restart: always
    deploy:
      restart_policy: {condition: on-failure, max_attempts: 3, delay: 5s}
      placement: {constraints: [node.role==manager]}
      labels: {a: b}
      mode: replicated
  b:
    image: x:1
    deploy: {mode: global, restart_policy: {condition: none}}
""")
    assert loaded.plan.services["a"].restart == "on-failure:3"
    assert loaded.plan.services["b"].restart == "no"
    assert loaded.plan.services["a"].labels == {}  # deploy.labels are the swarm service's
    swarm = [warning for warning in loaded.warnings if "a swarm setting" in warning]
    assert {warning.split(":")[0] for warning in swarm} == {
        "services.a.deploy.restart_policy.delay", "services.a.deploy.placement",
        "services.a.deploy.labels", "services.b.deploy.mode"}
    assert any("one container" in warning for warning in swarm)
    # For a swarm they are carried out: saying they are ignored would be false.
    on_swarm = load_plan(tmp_path / "keys" / "compose.yaml", environ={}, on_swarm=True)
    assert not [warning for warning in on_swarm.warnings if "a swarm setting" in warning]


def test_label_files_under_labels(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "one.labels").write_text("com.x.a=1\ncom.x.b=2\n")
    (tmp_path / "keys" / "two.labels").write_text("com.x.b=3\ncom.x.c=4\n")
    loaded = load(tmp_path, """
services:
  a: {image: x:1, label_file: [one.labels, two.labels], labels: {com.x.c: own}}
""")
    assert loaded.plan.services["a"].labels == {"com.x.a": "1", "com.x.b": "3",
                                                "com.x.c": "own"}


def test_a_missing_label_file_is_a_problem(tmp_path: Path) -> None:
    problems = refused(tmp_path, "services:\n  a: {image: x:1, label_file: gone.labels}\n")
    assert any(p.startswith("services.a.label_file[0]") and "cannot read" in p
               for p in problems)


def test_using_another_services_container_is_a_dependency(tmp_path: Path) -> None:
    """compose-go's implied depends_on: started, restarted with it but for volumes_from;
    with x-ollamatopo phases and no depends_on, the plan's graph has them all the same."""
    loaded = load(tmp_path, """
services:
  db: {image: x:1, ipc: shareable}
  files: {image: x:1}
  side: {image: x:1, network_mode: "service:db", volumes_from: ["files:ro"]}
  api: {image: x:1, links: ["db:database"], depends_on: {db: {condition: service_healthy}}}
""")
    plan = loaded.plan
    assert plan.dependencies("side") == {"db": Condition.STARTED, "files": Condition.STARTED}
    assert {name: (o.required, o.restart)
            for name, o in plan.services["side"].dependency_options.items()} == {
        "db": (True, True)}
    assert plan.dependencies("api") == {"db": Condition.HEALTHY}  # depends_on says otherwise
    phased = load(tmp_path, """
services:
  db: {image: x:1}
  side: {image: x:1, pid: "service:db"}
x-ollamatopo:
  phases: [{name: one, services: [db, side]}]
""", "phased.yaml").plan
    assert phased.dependencies("side") == {"db": Condition.STARTED}


def test_a_cycle_through_a_shared_container_is_refused(tmp_path: Path) -> None:
    problems = refused(tmp_path, """
services:
  a: {image: x:1, network_mode: "service:b"}
  b: {image: x:1, volumes_from: [a]}
""")
    assert any("dependency cycle" in problem for problem in problems), problems


# --- the payload -----------------------------------------------------------------------------


def test_the_payload_maps_each_key_as_compose_does(tmp_path: Path) -> None:
    kwargs = payload(tmp_path, """
services:
  a:
    image: x:1
    ulimits: {nofile: {soft: 1024, hard: 2048}, core: 0}
    sysctls: {net.core.somaxconn: 1024}
    shm_size: 64m
    logging: {driver: json-file, options: {max-size: 1m}}
    dns: [9.9.9.9]
    dns_search: [example.com]
    dns_opt: [ndots:2]
    domainname: example.com
    privileged: true
    pid: host
    ipc: shareable
    devices: ["/dev/null:/dev/xnull:r"]
    stop_signal: SIGINT
    platform: linux/amd64
    mem_limit: 256m
    mem_reservation: 64m
    memswap_limit: 512m
    cpus: 0.5
    cpu_shares: 512
    cpuset: "0"
    pids_limit: 100
    oom_score_adj: 100
    group_add: [audio]
    tty: true
    stdin_open: true
    mac_address: 02:42:ac:11:00:02
    storage_opt: {size: 1G}
    runtime: runc
    userns_mode: host
    cgroup_parent: tests
    uts: host
    cgroup: private
    cpu_period: 100000
    cpu_quota: 50000
    cpu_rt_period: 1000000
    cpu_rt_runtime: 950000
    mem_swappiness: 0
    oom_kill_disable: true
    blkio_config:
      weight: 300
      weight_device: [{path: /dev/sda, weight: 400}]
      device_read_bps: [{path: /dev/sda, rate: 12mb}]
      device_write_bps: [{path: /dev/sda, rate: "1024k"}]
      device_read_iops: [{path: /dev/sda, rate: 120}]
      device_write_iops: [{path: /dev/sda, rate: "30"}]
    device_cgroup_rules: ["c 1:3 mr"]
    cpu_count: 2
    cpu_percent: 50
    isolation: default
""")
    host = kwargs["host_config"]
    assert (host["CpuPeriod"], host["CpuQuota"], host["CpuRealtimePeriod"],
            host["CpuRealtimeRuntime"]) == (100000, 50000, 1000000, 950000)
    # 0 is the kernel's "avoid swapping" and is given as written (compose v2 drops a 0).
    assert (host["MemorySwappiness"], host["OomKillDisable"]) == (0, True)
    assert host["BlkioWeight"] == 300
    assert host["BlkioWeightDevice"] == [{"Path": "/dev/sda", "Weight": 400}]
    assert (host["BlkioDeviceReadBps"], host["BlkioDeviceWriteBps"]) == (
        [{"Path": "/dev/sda", "Rate": 12 * 2**20}], [{"Path": "/dev/sda", "Rate": 2**20}])
    assert (host["BlkioDeviceReadIOps"], host["BlkioDeviceWriteIOps"]) == (
        [{"Path": "/dev/sda", "Rate": 120}], [{"Path": "/dev/sda", "Rate": 30}])
    assert host["DeviceCgroupRules"] == ["c 1:3 mr"]
    assert (host["CpuCount"], host["CpuPercent"], host["Isolation"]) == (2, 50, "default")
    assert host["Ulimits"] == [{"Name": "core", "Soft": 0, "Hard": 0},
                               {"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert host["ShmSize"] == 64 * 2**20
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert (host["Dns"], host["DnsSearch"], host["DnsOptions"]) == (
        ["9.9.9.9"], ["example.com"], ["ndots:2"])
    assert host["Privileged"] is True
    assert (host["PidMode"], host["IpcMode"], host["UTSMode"], host["CgroupnsMode"]) == (
        "host", "shareable", "host", "private")
    assert host["Devices"] == [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull",
                                "CgroupPermissions": "r"}]
    assert (host["Memory"], host["MemoryReservation"], host["MemorySwap"]) == (
        256 * 2**20, 64 * 2**20, 512 * 2**20)
    assert (host["NanoCpus"], host["CpuShares"], host["CpusetCpus"]) == (500_000_000, 512, "0")
    assert (host["PidsLimit"], host["OomScoreAdj"], host["GroupAdd"]) == (100, 100, ["audio"])
    assert (host["StorageOpt"], host["Runtime"], host["UsernsMode"], host["CgroupParent"]) == (
        {"size": "1G"}, "runc", "host", "tests")
    assert {key: kwargs[key] for key in ("domainname", "stop_signal", "platform", "tty",
                                         "stdin_open", "detach", "mac_address")} == {
        "domainname": "example.com", "stop_signal": "SIGINT", "platform": "linux/amd64",
        "tty": True, "stdin_open": True, "detach": True, "mac_address": "02:42:ac:11:00:02"}


def test_deploy_resources_win_over_the_service_keys(tmp_path: Path) -> None:
    """Equal where compose wants them equal; deploy's pids and the explicit cpu_shares win."""
    host = payload(tmp_path, """
services:
  a:
    image: x:1
    mem_limit: 1g
    pids_limit: 10
    cpu_shares: 100
    deploy: {resources: {limits: {memory: 1g, pids: 10}, reservations: {cpus: 2}}}
""")["host_config"]
    assert (host["Memory"], host["PidsLimit"], host["CpuShares"]) == (2**30, 10, 100)


def test_gpus_and_reserved_devices_are_device_requests(tmp_path: Path) -> None:
    host = payload(tmp_path, """
services:
  a:
    image: x:1
    gpus: all
  b:
    image: x:1
    gpus: [{driver: nvidia, count: 2, capabilities: [compute]}, {device_ids: ["3"]}]
    deploy:
      resources:
        reservations:
          devices:
            - {capabilities: [gpu, utility], driver: nvidia, device_ids: ["0", "1"],
               options: {mig: "on"}}
            - {capabilities: [gpu]}
""", "b")["host_config"]
    assert host["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": 2, "DeviceIDs": None, "Capabilities": [["compute", "gpu"]],
         "Options": {}},
        {"Driver": "", "Count": 0, "DeviceIDs": ["3"], "Capabilities": [["gpu"]],
         "Options": {}},
        {"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0", "1"],
         "Capabilities": [["gpu", "utility"]], "Options": {"mig": "on"}},
        {"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]],
         "Options": {}}]
    every = payload(tmp_path, "services:\n  a: {image: x:1, gpus: all}\n")["host_config"]
    assert every["DeviceRequests"] == [{"Driver": "", "Count": -1, "DeviceIDs": None,
                                        "Capabilities": [["gpu"]], "Options": {}}]


def test_another_services_container_is_named_by_its_container_name(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  db: {image: x:1, container_name: the-db, ipc: shareable}
  files: {image: x:1}
  side:
    image: x:1
    network_mode: "service:db"
    pid: "service:db"
    ipc: "service:db"
    volumes_from: ["files:ro", "container:elsewhere:rw", db]
  api: {image: x:1, links: ["db:database", files], external_links: ["legacy:cache"]}
""")
    side = container_config(loaded.plan, "side", loaded.path.parent)
    host = side.create_kwargs["host_config"]
    assert (host["NetworkMode"], host["PidMode"], host["IpcMode"]) == (
        "container:the-db", "container:the-db", "container:the-db")
    assert host["VolumesFrom"] == ["keys-files:ro", "elsewhere:rw", "the-db"]
    assert side.endpoints == () and side.joins == side.holds == ("db", "files")
    api = container_config(loaded.plan, "api", loaded.path.parent)
    assert api.create_kwargs["host_config"]["Links"] == [
        "the-db:database", "keys-files:files", "legacy:cache"]
    assert [endpoint.network for endpoint in api.endpoints] == ["keys_default"]
    assert (api.joins, api.holds) == (("db", "files"), ())  # a link is by name


@pytest.mark.parametrize("mode", ["host", "none", "bridge"])
def test_the_engines_own_network_modes_have_no_endpoints(tmp_path: Path, mode: str) -> None:
    loaded = load(tmp_path, f"services:\n  a: {{image: x:1, network_mode: {mode}}}\n")
    config = container_config(loaded.plan, "a", loaded.path.parent)
    assert config.create_kwargs["host_config"]["NetworkMode"] == mode
    assert config.endpoints == ()


def test_a_service_without_these_keys_has_the_payload_it_had(tmp_path: Path) -> None:
    """No new key appears unless used: existing containers keep their config hash."""
    kwargs = payload(tmp_path, "services:\n  a: {image: x:1, restart: always}\n")
    assert set(kwargs) == {"image", "command", "entrypoint", "environment", "hostname", "user",
                           "working_dir", "ports", "stop_timeout", "host_config"}
    assert set(kwargs["host_config"]) == {"PortBindings", "Mounts", "RestartPolicy",
                                          "ReadonlyRootfs", "NetworkMode"}


# --- reconcile: a container that uses a recreated one ----------------------------------------


def test_a_container_using_a_recreated_one_is_recreated_too(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  db: {image: x:1}
  side: {image: x:1, network_mode: "service:db"}
  other: {image: x:1}
""")
    configs = {name: container_config(loaded.plan, name, loaded.path.parent)
               for name in loaded.plan.services}

    def running(name: str, digest: str) -> ObservedContainer:
        return ObservedContainer(id=f"id-{name}", name=name, service=name, config_hash=digest,
                                 state="running", exit_code=0, image_id="", depends_on=())

    snapshot = Snapshot("keys", (running("db", "old"), running("side", configs["side"].config_hash),
                                 running("other", configs["other"].config_hash)), (), ())
    actions = reconcile(configs, [], snapshot).services
    assert actions["db"].verb is Verb.RECREATE
    assert actions["side"].verb is Verb.RECREATE
    assert actions["side"].cause == "db is made again and this container uses its container"
    assert actions["other"].verb is Verb.KEEP


# --- images: pull_policy and platform --------------------------------------------------------


def test_platforms_compare_as_containerd_normalizes_them() -> None:
    assert platform_matches("linux/amd64", "linux/amd64")
    assert platform_matches("linux/x86_64", "linux/amd64")
    assert platform_matches("linux/arm64/v8", "linux/arm64")
    assert platform_matches("linux", "linux/arm64")
    assert not platform_matches("linux/arm64", "linux/amd64")
    assert not platform_matches("windows/amd64", "linux/amd64")
    assert refresh_seconds("daily") == 86400 and refresh_seconds("every_1d12h") == 129600
    assert refresh_seconds("missing") is None


def test_of_several_services_the_most_eager_policy_wins(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  a: {image: x:1, pull_policy: never}
  b: {image: x:1, pull_policy: weekly, platform: linux/amd64}
  c: {image: x:1, pull_policy: daily}
  d: {image: y:1}
""")
    wants = image_wants(container_config(loaded.plan, name, loaded.path.parent)
                        for name in loaded.plan.services)
    assert wants == {"x:1": ImageWants("daily", "linux/amd64"), "y:1": ImageWants()}


class Images:
    """The engine's image calls: `present` images with their facts; pulls fail (no registry)."""

    def __init__(self, present: dict[str, ImageFacts]) -> None:
        self.present, self.pulled = present, []  # type: ignore[var-annotated]

    async def image_facts(self, image: str) -> ImageFacts | None:
        return self.present.get(image)

    async def pull(self, image: str, on_progress: Callable[[int, int], None] | None = None,
                   platform: str | None = None) -> None:
        self.pulled.append((image, platform))
        raise EngineError(f"pull image {image}: no registry answers")


NOW_FACTS = ImageFacts("linux/amd64", None)


@pytest.mark.parametrize(("wants", "facts", "pulled", "error"), [
    (ImageWants("never"), None, [], "is not on the engine, and its pull_policy is never"),
    (ImageWants("always"), NOW_FACTS, [("x:1", None)],
     "could not be pulled (pull_policy always pulls it again although the engine has it)"),
    (ImageWants("daily"), ImageFacts("linux/amd64", 0.0), [("x:1", None)], "could not be "),
    (ImageWants("daily", "linux/amd64"), ImageFacts("linux/amd64", 4e9), [], None),
    (ImageWants("missing", "linux/arm64"), NOW_FACTS, [],
     "image x:1 on the engine is linux/amd64, not linux/arm64"),
    (ImageWants("missing", "linux/arm64"), None, [("x:1", "linux/arm64")],
     "is not on the engine and could not be pulled"),
])
def test_pull_policy_and_platform_decide_what_is_pulled(wants: ImageWants,
                                                       facts: ImageFacts | None,
                                                       pulled: list[Any],
                                                       error: str | None) -> None:
    engine = Images({"x:1": facts} if facts else {})
    recorder = RunRecorder(run_id="run1", project="keys", plan_path="compose.yaml",
                           phases={"a": "all"}, phase_order=["all"])
    supply = ImageSupply(engine, recorder, ["x:1"],  # type: ignore[arg-type]
                         {"x:1": "sha256:1"} if facts else {}, wants={"x:1": wants})

    async def run() -> str | None:
        await supply.pull_missing()
        try:
            await supply.wait("a", "x:1")
        except ServiceFailed as failure:
            return failure.cause
        return None

    cause = anyio.run(run)
    assert engine.pulled == pulled
    assert (cause is None) if error is None else (cause is not None and error in cause), cause


# --- the engine's refusals, said plainly -------------------------------------------------------


def test_a_device_the_engine_lacks_is_said_plainly() -> None:
    text = _plain('could not select device driver "" with capabilities: [[gpu]]')
    assert text.startswith("the engine has no such device")
    assert "could not select device driver" in text  # the engine's own words stay
    assert _plain("unable to apply caps: operation not permitted").startswith(
        "the engine cannot give this container the capabilities")


def test_scale_is_the_replica_count(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  a: {image: x:1, scale: 3}
  b: {image: x:1, scale: 2, deploy: {replicas: 2}}
""")
    assert loaded.declared is not None
    assert {name: spec.replicas for name, spec in loaded.declared.services.items()} == {
        "a": 3, "b": 2}
    assert sorted(loaded.plan.services) == ["a", "a-2", "a-3", "b", "b-2"]


def test_settings_that_put_the_host_at_risk_are_warned_about(tmp_path: Path) -> None:
    loaded = load(tmp_path, """
services:
  a: {image: x:1, oom_kill_disable: true, device_cgroup_rules: ["a *:* rwm", "c 1:3 r"]}
  b: {image: x:1, oom_kill_disable: true, mem_limit: 1g}
""")
    assert [warning.split(":")[0] for warning in loaded.warnings] == [
        "services.a.oom_kill_disable", "services.a.device_cgroup_rules[0]"]


def test_a_windows_only_key_is_said_to_do_nothing_here(tmp_path: Path) -> None:
    loaded = load(tmp_path, "services:\n  a: {image: x:1, cpu_count: 2, cpu_percent: 50}\n")
    assert [w.split(":")[0] for w in loaded.warnings] == ["services.a.cpu_count"]
