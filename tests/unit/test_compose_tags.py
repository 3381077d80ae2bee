"""Compose's YAML tags `!reset` and `!override` (issue 12), without an engine: how they are
read off the YAML nodes (_compose_tags), and what the loader does with them in `-f` files,
under `extends` and in an include's `path` list; an unknown tag is refused at its line.
tests/test_compose_referee_files.py checks the same files against compose v2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ollamatopo._errors import PlanError
from ollamatopo.plan._compose_tags import TagError, read_tags, under, without
from tests.unit.test_compose_extends import load


def tagged(text: str) -> tuple[frozenset[tuple[str, ...]], Any]:
    """The places `text`'s tags name, and the document built from its nodes after."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    places = read_tags(node)
    return places, yaml.safe_load(yaml.serialize(node)) if node is not None else None


# --- reading the tags ---------------------------------------------------------------------------


def test_reset_takes_the_value_out_and_names_its_place() -> None:
    places, tree = tagged("services:\n  web:\n    image: a\n    ports: !reset ['80:80']\n")
    assert places == {("services", "web", "ports")}
    assert tree == {"services": {"web": {"image": "a"}}}


def test_override_keeps_the_plain_value_tags_under_it_and_all() -> None:
    places, tree = tagged("env: !override {A: !reset x, B: '2'}\nn: !override 3\n")
    assert places == {("env",), ("n",)}
    assert tree == {"env": {"A": "x", "B": "2"}, "n": "3"}  # a tagged scalar is text


def test_a_tagged_list_item_is_dropped_or_kept_and_names_no_place() -> None:
    places, tree = tagged("expose: [!reset '1', '2', !override '3']\n")
    assert places == frozenset()
    assert tree == {"expose": ["2", "3"]}


def test_anchors_merge_keys_and_aliases() -> None:
    places, tree = tagged("x: &a {p: !reset [1], q: 2}\n"
                          "s:\n  a: *a\n  b: {<<: *a, r: !override {k: v}}\n")
    # the reset's place is where the anchor is written; the merge key adds no key
    assert places == {("x", "p"), ("s", "b", "r")}
    assert tree == {"x": {"q": 2}, "s": {"a": {"q": 2}, "b": {"q": 2, "r": {"k": "v"}}}}


def test_a_document_without_tags_is_left_as_it_is() -> None:
    text = "a: [1, {b: !!str 2}]\n"
    assert tagged(text) == (frozenset(), {"a": [1, {"b": "2"}]})
    assert read_tags(None) == frozenset()


@pytest.mark.parametrize(("text", "what", "line"), [
    ("a:\n  b: !overide [1]\n", "unknown YAML tag '!overide'", 2),
    ("a:\n  - !custom x\n", "unknown YAML tag '!custom'", 2),
    ("a:\n  !reset b: 1\n", "a YAML tag on a key", 2),
    ("!reset {a: 1}\n", "tags a value of the file", 1),
])
def test_other_tags_are_refused_at_their_node(text: str, what: str, line: int) -> None:
    with pytest.raises(TagError) as caught:
        read_tags(yaml.compose(text, Loader=yaml.SafeLoader))
    assert what in str(caught.value.problem)
    assert caught.value.problem_mark is not None
    assert caught.value.problem_mark.line + 1 == line


def test_without_removes_places_and_copies_what_it_changes() -> None:
    tree: dict[str, Any] = {"services": {"web": {"ports": [1], "image": "a"}, "db": {"image": "d"}}}
    out = without(tree, [("services", "web", "ports"), ("services", "gone", "x"), ("nope",)])
    assert out == {"services": {"web": {"image": "a"}, "db": {"image": "d"}}}
    assert tree["services"]["web"]["ports"] == [1]  # the tree given is shared: unchanged
    assert out["services"]["db"] is tree["services"]["db"]
    assert without({1: {"a": 1}}, [("1", "a")]) == {1: {}}  # a key as written, read as text


def test_under_gives_the_places_below_a_prefix() -> None:
    places = {("services", "web", "ports"), ("services", "web"), ("services", "db", "env")}
    assert under(places, ("services", "web")) == {("ports",)}
    assert under(places, ("volumes",)) == frozenset()


# --- in the loader ------------------------------------------------------------------------------


BASE = """
services:
  web:
    image: web:1
    ports: ["8080:80", "8443:443"]
    environment: {LOG: info, REGION: eu}
    labels: {tier: web}
"""


def test_an_override_file_resets_and_overrides_what_it_is_merged_over(
        tmp_path: Path) -> None:
    web = load(tmp_path, {
        "compose.yaml": BASE,
        "b.yaml": "services:\n  web:\n    ports: !reset []\n"
                  "    environment: !override {LOG: debug}\n    labels: {team: shop}\n",
    }, overrides=("b.yaml",)).plan.services["web"]
    assert web.ports == []
    assert web.environment == {"LOG": "debug"}  # replaced whole, not merged
    assert web.labels == {"tier": "web", "team": "shop"}  # untagged: merged as before


def test_override_replaces_a_list_that_would_be_appended(tmp_path: Path) -> None:
    web = load(tmp_path, {
        "compose.yaml": BASE,
        "b.yaml": "services:\n  web:\n    ports: !override ['9090:90']\n",
    }, overrides=("b.yaml",)).plan.services["web"]
    assert [(p.host_port, p.container_port) for p in web.ports] == [(9090, 90)]


def test_a_services_reset_under_extends_takes_the_key_out_of_its_base(tmp_path: Path) -> None:
    plan = load(tmp_path, {"compose.yaml": """
services:
  base:
    image: base:1
    ports: ["9000:9000"]
    environment: {MODE: base, KEEP: "yes"}
  child:
    extends: base
    ports: !reset []
    environment: !override {MODE: child}
"""}).plan
    assert plan.services["child"].ports == []
    assert plan.services["child"].environment == {"MODE": "child"}
    assert len(plan.services["base"].ports) == 1  # the base itself keeps it


def test_a_later_file_of_an_include_path_list_resets_the_earlier_ones(tmp_path: Path) -> None:
    plan = load(tmp_path, {
        "compose.yaml": "include:\n  - path: [part/a.yaml, part/b.yaml]\n",
        "part/a.yaml": "services:\n  cache:\n    image: cache:1\n    ports: ['6379:6379']\n"
                       "    environment: {A: '1'}\n",
        "part/b.yaml": "services:\n  cache:\n    ports: !reset []\n"
                       "    environment: !override {B: '2'}\n",
    }).plan
    assert plan.services["cache"].ports == []
    assert plan.services["cache"].environment == {"B": "2"}


def test_a_tag_in_a_file_with_nothing_before_it(tmp_path: Path) -> None:
    web = load(tmp_path, {"compose.yaml": BASE.replace(
        'ports: ["8080:80", "8443:443"]', "ports: !reset ['8080:80']").replace(
        "environment: {LOG: info, REGION: eu}", "environment: !override {LOG: info}")},
    ).plan.services["web"]
    assert web.ports == []
    assert web.environment == {"LOG": "info"}


def test_an_included_definition_in_canonical_form_is_one_with_the_including_files(
        tmp_path: Path) -> None:
    files = {
        "compose.yaml": "include: [inc.yaml]\nservices:\n  db:\n    image: db:1\n"
                        "    depends_on: {cache: {condition: service_started, required: true}}\n",
        "inc.yaml": "services:\n  db: {image: db:1, depends_on: [cache]}\n"
                    "  cache: {image: cache:1}\n",
    }
    assert set(load(tmp_path, files).plan.services) == {"db", "cache"}
    # both in the short form: compose has changed the included one, so they are two
    files["compose.yaml"] = "include: [inc.yaml]\nservices:\n  db:\n    image: db:1\n" \
                            "    depends_on: [cache]\n"
    with pytest.raises(PlanError, match=r"defined here and again in inc\.yaml"):
        load(tmp_path, files)


def test_a_misspelt_tag_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as caught:
        load(tmp_path, {"compose.yaml": BASE,
                        "b.yaml": "services:\n  web:\n    ports: !overide ['1:1']\n"},
             overrides=("b.yaml",))
    assert caught.value.source == str(tmp_path / "b.yaml")
    [problem] = caught.value.problems
    assert (problem.path, problem.line) == ("services.web.ports", 3)
    assert problem.message.startswith("unknown YAML tag '!overide'")


def test_lines_count_the_file_as_written_after_a_reset_item(tmp_path: Path) -> None:
    """A `!reset` list item is gone: the next item's problem names its own line."""
    with pytest.raises(PlanError) as caught:
        load(tmp_path, {"compose.yaml": "services:\n  web:\n    image: a:1\n"
                                        "    ports:\n      - !reset '80:80'\n      - nope\n"})
    [problem] = caught.value.problems
    assert (problem.path, problem.line) == ("services.web.ports[0]", 6)
