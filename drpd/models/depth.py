"""How deeply JSON values nest, and the cap drpd puts on it.

A value nested a thousand levels deep is harmless as bytes but not to
everything that later walks it recursively (JSON Patch's deep copies,
encoders, schema checks hit Python's recursion limit: a 500 on every later
write of that object). drpd refuses such values where they come in: the API
decodes each JSON body and then checks its depth (``max_json_depth``,
default :data:`DEFAULT_MAX_DEPTH`), and every object is checked again
before it is stored, so no JSON Patch can build one either.
"""

from __future__ import annotations

from typing import Any

import msgspec

#: a DRP object is a handful of levels deep; params rarely nest past ten
DEFAULT_MAX_DEPTH = 64


def too_deep(value: Any, limit: int) -> bool:
    """True when ``value`` (builtins or msgspec Structs) nests past ``limit`` levels.

    Iterative and stopping at the first path past the limit, so it costs
    at most one visit per container and cannot itself recurse too deeply.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        elif isinstance(node, msgspec.Struct):
            children = [getattr(node, f) for f in node.__struct_fields__]
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list, tuple, msgspec.Struct)))
    return False
