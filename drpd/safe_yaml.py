"""Reading YAML from anyone without letting aliases or nesting blow it up.

YAML anchors and aliases let a 500-byte document name the same node
millions of times (the "billion laughs" bomb): PyYAML composes it as a
small graph, then builds every copy. :func:`load` composes the graph,
measures what it would expand to (bytes of scalars and structure, aliases
counted at every use, merge keys included) and its nesting, and refuses it
before anything is built when that passes ``max_size`` or ``max_depth``. A
recursive alias is refused too. Everything else is plain ``SafeLoader``.
"""

from __future__ import annotations

from typing import Any

import yaml


class YamlRefused(ValueError):
    """A YAML document too deep or self-referencing (or too big: YamlTooLarge)."""


class YamlTooLarge(YamlRefused):
    """A YAML document whose aliases expand it past the size limit."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_expansion(root: yaml.Node, *, max_size: int, max_depth: int) -> None:
    """Refuse ``root`` when its expansion passes ``max_size`` bytes or ``max_depth``
    levels. Iterative, one visit per distinct node: its own cost is bounded by the
    input, whatever the expansion."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            active.discard(key)
            children = _children(node)
            own = len(node.value) + 2 if isinstance(node, yaml.ScalarNode) else 2 + len(children)
            size[key] = own + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            if size[key] > max_size:
                raise YamlTooLarge(f"YAML expands (aliases counted at each use) past the "
                                  f"limit of {max_size} bytes")
            if height[key] > max_depth:
                raise YamlRefused(f"YAML nested more than {max_depth} levels deep")
            continue
        if key in size:
            continue  # an alias of a node already measured
        if key in active:
            raise YamlRefused("YAML alias refers to a node that contains it")
        active.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def load(text: str | bytes, *, max_size: int, max_depth: int,
         loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """One YAML document, checked by :func:`check_expansion` before it is built.

    Raises ``yaml.YAMLError`` for bad YAML and :class:`YamlRefused` for a
    document that would expand too far.
    """
    parser = loader(text)
    try:
        try:
            node = parser.get_single_node()
        except RecursionError:
            raise YamlRefused(f"YAML nested more than {max_depth} levels deep") from None
        if node is None:
            return None
        check_expansion(node, max_size=max_size, max_depth=max_depth)
        return parser.construct_document(node)
    finally:
        parser.dispose()
