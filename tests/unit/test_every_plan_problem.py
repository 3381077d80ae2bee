"""Every problem of a plan at once, each with its line (issue 15): the checks across parts
(names, references, phases, cycles, subnets, replicas, files) also run when the model
refused some parts, on what could be read, without follow-on noise."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ollamatopo._errors import PlanError
from ollamatopo.plan._loading import LoadedPlan

Load = Callable[..., LoadedPlan]
Refuse = Callable[..., PlanError]


def _found(error: PlanError) -> list[tuple[str, int | None]]:
    return sorted((problem.path, problem.line) for problem in error.problems)


def _message(error: PlanError, path: str) -> str:
    (problem,) = [problem for problem in error.problems if problem.path == path]
    return problem.message


# --- the stages no longer hide each other ---------------------------------------------------


def test_an_unknown_key_does_not_hide_an_unknown_phase_service(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        services:
          db:
            image: postgres
            restartt: always
        phases: [{name: one, services: [db, ghost]}]
    """)
    assert _found(error) == [("phases[0].services[1]", 6), ("services.db.restartt", 5)]
    assert "unknown service 'ghost'" in _message(error, "phases[0].services[1]")


def test_a_bad_phase_name_does_not_hide_invalid_service_names(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        services:
          "bad name": {image: x}
          -dash: {image: x}
        phases: [{name: "", services: ["bad name", -dash]}]
    """)
    assert _found(error) == [("phases[0].name", 5), ("services.-dash", 4),
                             ("services.bad name", 3)]


def test_a_self_dependency_does_not_hide_a_cycle(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        services:
          x: {image: x, after: [x]}
          a: {image: x, after: [b]}
          b: {image: x, after: [c]}
          c: {image: x, after: [a]}
        phases: [{name: one, services: [x, a, b, c]}]
    """)
    assert _found(error) == [("services.a.after", 4), ("services.x.after.x", 3)]
    assert _message(error, "services.x.after.x") == "a service cannot wait for itself"
    assert "dependency cycle: a -> b -> c -> a" in _message(error, "services.a.after")


def test_every_separate_cycle_is_reported(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        services:
          a: {image: x, after: [b]}
          b: {image: x, after: [a]}
          c: {image: x}
          d: {image: x, after: [e]}
          e: {image: x, after: {c: started, d: healthy}}
        phases:
          - {name: one, services: [a, b, c]}
          - {name: two, services: [d, e]}
    """)
    assert _found(error) == [("services.a.after", 3), ("services.d.after", 6)]
    assert "a -> b -> a" in _message(error, "services.a.after")
    assert "d -> e -> d" in _message(error, "services.d.after")


def test_a_cycle_through_a_phase_default_is_named_from_its_after(plan_error: Refuse) -> None:
    """A phase default only points back, so the cycle starts at the `after:` to remove."""
    error = plan_error("""\
        project: p
        services:
          late: {image: x}
          early: {image: x, after: [late]}
        phases:
          - {name: one, services: [early]}
          - {name: two, services: [late]}
    """)
    assert _found(error) == [("services.early.after", 4)]
    assert "dependency cycle: early -> late -> early" in error.problems[0].message


def test_an_unknown_dependency_comes_with_the_others_and_its_line(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        networks: {back: {}}
        services:
          db: {image: postgres, imgae: x}
          api:
            image: api
            networks: [back, frnt]
            after:
              - dbb
          web: {image: nginx, after: {api: started, apii: healthy}}
        phases: [{name: one, services: [db, api, web]}]
    """)
    assert _found(error) == [("services.api.after.dbb", 9), ("services.api.networks.frnt", 7),
                             ("services.db.imgae", 4), ("services.web.after.apii", 10)]
    assert "unknown service 'dbb' (did you mean 'db'?)" in str(error)


def test_replica_and_file_problems_come_with_the_others(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        services:
          a: {image: x, replicas: 2, ports: ["80:80"]}
          b: {image: x, env_file: absent.env, restartt: no}
        phases: [{name: one, services: [a, b]}]
    """)
    assert _found(error) == [("services.a.ports[0]", 3), ("services.b.env_file[0]", 4),
                             ("services.b.restartt", 4)]


# --- no follow-on noise ---------------------------------------------------------------------


@pytest.mark.parametrize("broken", [
    "db: postgres",  # not a mapping
    "db: {imgae: postgres}",  # no image
    "db: {image: Not/An/Image}",
    "db: {image: postgres, ports: [eighty]}",
    "db: {image: postgres, optional: maybe}",
])
def test_naming_a_service_the_model_refused_is_not_unknown(plan_error: Refuse, tmp_path: Path,
                                                           broken: str) -> None:
    (tmp_path / "t").write_text("upstream x { {{upstream_servers}} }\n", encoding="utf-8")
    error = plan_error(f"""
        project: p
        services:
          {broken}
          api: {{image: x, after: [db], load_balance: {{template: t, backends: {{db: 1}}}}}}
        phases: [{{name: one, services: [db]}}, {{name: two, services: [api]}}]
    """)
    assert all(problem.path.startswith("services.db") for problem in error.problems), str(error)


def test_a_broken_after_makes_up_no_cycle(plan_error: Refuse) -> None:
    """Read as absent, a's broken `after:` would give it the phase default (b), and b waits
    for a: a cycle that fixing `after:` to [c] would not have."""
    error = plan_error("""
        project: p
        services:
          b: {image: x, after: [a]}
          a: {image: x, after: [c, {c: started}]}
          c: {image: x, after: {}}
        phases:
          - {name: one, services: [b]}
          - {name: two, services: [a, c]}
    """)
    assert [problem.path for problem in error.problems] == ["services.a.after"]


@pytest.mark.parametrize(("text", "path"), [
    pytest.param("""
        project: p
        services: {a: {image: x}, b: {image: x}}
        phases: [{name: one, services: [a]}, oops]
    """, "phases[1]", id="a phase that is no mapping"),
    pytest.param("""
        project: p
        services: {a: {image: x}, b: {image: x}}
        phases: [{name: one, services: [a]}, {name: two, services: b}]
    """, "phases[1].services", id="phase services that are no list"),
    pytest.param("""
        project: p
        services: {a: {image: x}, b: {image: x}}
        phases: {one: [a, b]}
    """, "phases", id="phases that are no list"),
    pytest.param("""
        project: p
        networks: [back]
        volumes: {data: {driver: "no good"}}
        services: {a: {image: x, networks: [back], volumes: ["data:/data"]}}
        phases: [{name: one, services: [a]}]
    """, "networks", id="networks that are no mapping"),
    pytest.param("""
        project: p
        networks: {back: {driver: "no good"}}
        services: {a: {image: x, networks: [back]}}
        phases: [{name: one, services: [a]}]
    """, "networks.back.driver", id="a network the model refused"),
])
def test_what_cannot_be_read_is_not_checked_further(plan_error: Refuse, text: str,
                                                    path: str) -> None:
    """No "in no phase" for services an unreadable phase may list, no "unknown network" for
    networks that cannot be read."""
    error = plan_error(text)
    assert path in [problem.path for problem in error.problems]
    assert all(problem.path in (path, "volumes.data.driver") for problem in error.problems), \
        str(error)


def test_past_the_service_limit_nothing_is_checked_across_parts(plan_error: Refuse) -> None:
    """Past the limit only the model's problems: not a thousand services in no phase."""
    services = "".join(f"  s{i}: {{image: x, imgae: y}}\n" for i in range(1001))
    error = plan_error("project: p\nservices:\n" + services + "phases: []\n")
    assert {problem.path.partition(".s")[0] for problem in error.problems} == {"services"}
    assert not any("in no phase" in problem.message for problem in error.problems)


def test_checks_across_parts_of_a_refused_plan_stay_fast(plan_error: Refuse) -> None:
    """The checks now also run on refused plans: 999 broken services, twenty phases of
    thousands of names through an alias, and default dependencies between two big phases.
    The CPU limits guard against quadratic checks (minutes here), not speed: about 2 s
    each on an idle machine, more beside other work."""
    names = ", ".join(f"t{i}" for i in range(5000))
    services = "".join(f"  s{i}: {{image: x, imgae: y}}\n" for i in range(300))
    started = time.process_time()
    error = plan_error(f"project: p\nx-names: &names [{names}]\nservices:\n{services}phases:\n"
                       + "".join(f"  - {{name: p{n}, services: *names}}\n" for n in range(30)))
    assert time.process_time() - started < 10
    assert len(error.problems) == 300 + 30 * 5000 + 300

    first = "".join(f"  a{i}: {{image: x, imgae: y}}\n" for i in range(1, 500))
    second = "".join(f"  b{i}: {{image: x}}\n" for i in range(500))
    phases = [", ".join(f"{letter}{i}" for i in range(500)) for letter in "ab"]
    started = time.process_time()
    error = plan_error(f"project: p\nservices:\n  a0: {{image: x, after: [b1]}}\n{first}{second}"
                       f"phases:\n  - {{name: one, services: [{phases[0]}]}}\n"
                       f"  - {{name: two, services: [{phases[1]}]}}\n")
    assert time.process_time() - started < 10
    assert len(error.problems) == 499 + 1
    assert "dependency cycle: a0 -> b1 -> a0" in str(error)


# --- lines ----------------------------------------------------------------------------------


def test_problems_without_a_line_of_their_own_get_the_line_that_holds_them(
        plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        services:
          a:
            image: x
            after: ["${DEP}"]
          b: {}
        phases: [{name: one, services: [a, b]}]
    """, {"DEP": "ghost"})
    assert _found(error) == [("services.a.after.ghost", 5), ("services.b.image", 6)]


# --- overlapping subnets --------------------------------------------------------------------


def test_overlapping_subnets_are_a_plan_problem_naming_both(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        networks:
          wide: {subnet: 172.22.0.0/16}
          apart: {subnet: 172.23.0.0/24}
          inside: {subnet: 172.22.5.0/24}
        services: {a: {image: x}}
        phases: [{name: one, services: [a]}]
    """)
    assert _found(error) == [("networks.inside.subnet", 5)]
    assert error.problems[0].message == (
        "subnet 172.22.5.0/24 overlaps 172.22.0.0/16, the subnet of network 'wide' (line 3): "
        "the engine would refuse to create this network; choose subnets that do not overlap")


def test_each_network_inside_another_is_named(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        networks:
          b: {subnet: 10.1.2.0/24}
          c: {subnet: 10.1.3.0/24}
          a: {subnet: 10.1.0.0/16}
          same: {subnet: 10.1.2.0/24}
          v6: {subnet: "fd00:1::/64"}
          v6-wide: {subnet: "fd00::/16"}
        services: {a: {image: x}}
        phases: [{name: one, services: [a]}]
    """)
    assert _found(error) == [("networks.b.subnet", 3), ("networks.c.subnet", 4),
                             ("networks.same.subnet", 6), ("networks.v6.subnet", 7)]
    assert "10.1.2.0/24 overlaps 10.1.0.0/16, the subnet of network 'a' (line 5)" in str(error)
    assert "fd00:1::/64 overlaps fd00::/16, the subnet of network 'v6-wide' (line 8)" in str(error)


def test_of_two_equal_subnets_the_later_is_named(plan_error: Refuse) -> None:
    error = plan_error("""\
        project: p
        networks:
          first: {subnet: 10.1.2.0/24}
          second: {subnet: 10.1.2.0/24}
        services: {a: {image: x}}
        phases: [{name: one, services: [a]}]
    """)
    assert _found(error) == [("networks.second.subnet", 4)]
    assert "the subnet of network 'first' (line 3)" in str(error)


def test_subnets_that_do_not_overlap_load(load: Load) -> None:
    loaded = load("""
        project: p
        networks:
          a: {subnet: 10.0.0.0/24}
          b: {subnet: 10.0.1.0/24}
          c: {subnet: "::/120"}
          d: {subnet: 0.0.0.0/24}
          e: {}
        services: {a: {image: x}}
        phases: [{name: one, services: [a]}]
    """)
    assert len(loaded.plan.networks) == 5


def test_the_command_line_refuses_overlapping_subnets_with_exit_2(tmp_path: Path) -> None:
    from ollamatopo.cli._main import main

    plan = tmp_path / "plan.yaml"
    plan.write_text("project: p\nnetworks: {a: {subnet: 10.0.0.0/8}, b: {subnet: 10.9.0.0/16}}"
                    "\nservices: {a: {image: x}}\nphases: [{name: one, services: [a]}]\n",
                    encoding="utf-8")
    assert main(["plan", "--plan", str(plan)]) == 2
