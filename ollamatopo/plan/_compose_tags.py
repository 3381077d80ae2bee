"""Compose's YAML tags `!reset` and `!override`, as compose v2 (compose-go v2.9's loader,
`loader/reset.go`) reads them.

A tagged value is about the files before this one: what an `-f` file is merged over, the
service an `extends` takes, the earlier files of an include's `path` list. `!reset` removes
that key from what came before and from this file (`ports: !reset []`); `!override` removes
it from what came before and keeps this file's value, which so replaces the earlier one
whole instead of being merged into it (`ports: !override ["8080:80"]`). In a file with
nothing before it, `!reset` drops the key and `!override` is its plain value.

Read on the YAML nodes, before the document is built, as compose reads them: a tagged value's
place is the path of mapping keys that leads to it (a merge key `<<` adds none, and nothing
under a sequence is a place, so a tagged list item only drops or keeps that item); a `!reset`
inside an anchored mapping is used where the anchor is written, and an alias of it no longer
has it; a value under an `!override` is the plain value, tags and all; a tagged scalar is
text (compose casts typed keys later, as ollamatopo reads `"true"` and `"3"`). Any other
`!tag` is refused: compose would read it as a plain value, which hides a misspelt
`!overide`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

RESET = "!reset"
OVERRIDE = "!override"
TAGS = (RESET, OVERRIDE)
MERGE_KEY = "tag:yaml.org,2002:merge"
_PLAIN = {yaml.ScalarNode: "tag:yaml.org,2002:str",
          yaml.SequenceNode: yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
          yaml.MappingNode: yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG}

KeyPath = tuple[str, ...]  # mapping keys from the document's root, as written


def read_tags(root: yaml.Node | None) -> frozenset[KeyPath]:
    """The places of the document's `!reset` and `!override` values (what they remove from
    the files before). Changes the nodes: a `!reset` value is taken out of its mapping or
    sequence, an `!override` value is tagged as the plain value it is. A TagError at the node
    of another local tag."""
    if root is None:
        return frozenset()
    if root.tag in TAGS:
        raise _refused(root, f"{root.tag} tags a value of the file, not the whole file")
    reader = _TagReader()
    reader.keep(root, ())
    for node in reader.overriding:
        node.tag = _PLAIN[type(node)]
    return frozenset(reader.places)


def without(tree: Any, places: Iterable[KeyPath]) -> Any:
    """`tree` with the keys at `places` removed (copies along the way: trees are shared)."""
    for place in places:
        tree = _without(tree, place)
    return tree


def under(places: Iterable[KeyPath], prefix: KeyPath) -> frozenset[KeyPath]:
    """The places below `prefix`, relative to it (a service's own, for its `extends`)."""
    return frozenset(place[len(prefix):] for place in places
                     if len(place) > len(prefix) and place[:len(prefix)] == prefix)


class _TagReader:
    def __init__(self) -> None:
        self.places: set[KeyPath] = set()
        self.overriding: list[yaml.Node] = []
        self._open: set[int] = set()  # the nodes being read (a recursive alias stops here)

    def keep(self, node: yaml.Node, place: KeyPath | None, plain: bool = False) -> bool:
        """Whether `node` stays in its parent. `place`: its path, None under a sequence (no
        place compose matches); `plain`: under an `!override`, where tags are plain."""
        if node.tag in TAGS and not plain:
            if place is not None:
                self.places.add(place)
            if node.tag == RESET:
                return False
            self.overriding.append(node)
            plain = True
        elif node.tag.startswith("!") and not node.tag.startswith("!!"):
            if node.tag not in TAGS:
                raise _refused(node, f"unknown YAML tag {node.tag!r}: a compose file takes "
                                     f"{RESET} and {OVERRIDE} only; remove it")
            self.overriding.append(node)  # a tag under an !override: the plain value
        if id(node) in self._open:
            return True
        self._open.add(id(node))
        try:
            self._children(node, place, plain)
        finally:
            self._open.discard(id(node))
        return True

    def _children(self, node: yaml.Node, place: KeyPath | None, plain: bool) -> None:
        if isinstance(node, yaml.SequenceNode):
            node.value = [item for item in node.value if self.keep(item, None, plain)]
        elif isinstance(node, yaml.MappingNode):
            kept = []
            for key, value in node.value:
                if key.tag.startswith("!") and not key.tag.startswith("!!"):
                    raise _refused(key, f"a YAML tag on a key ({key.tag}): compose's tags "
                                        "go on values")
                child = place if key.tag == MERGE_KEY or place is None \
                    else (*place, str(key.value))
                if self.keep(value, child, plain):
                    kept.append((key, value))
            node.value = kept


def _without(tree: Any, place: KeyPath) -> Any:
    if not place or not isinstance(tree, dict):
        return tree
    matching = [key for key in tree if str(key) == place[0]]
    if not matching:
        return tree
    key = matching[0]
    if len(place) == 1:
        return {name: value for name, value in tree.items() if name != key}
    return {**tree, key: _without(tree[key], place[1:])}


class TagError(yaml.MarkedYAMLError):
    """A tag compose does not take, at its node (the loader names its file and line)."""


def _refused(node: yaml.Node, problem: str) -> TagError:
    return TagError(problem=problem, problem_mark=node.start_mark)
