"""How drpcli prints answers: pretty JSON by default, YAML on request.

JSON keeps the server's key order and non-ASCII text as is, indented by 2,
so ``drpcli ... | jq`` and a human reading the terminal both get what they
expect. Every answer is printed as a JSON document, even a bare string, so
a pipeline never has to guess whether the output is quoted.
"""

from __future__ import annotations

import json
from typing import Any

FORMATS = ("json", "yaml")


class Text(str):
    """An answer printed as the text it is, in every format: DRP's drpcli
    prints some answers as plain lines (``Deleted machine m1``, ``complete``)."""


def render(value: Any, fmt: str = "json") -> str:
    """The text to write to stdout, ending in a newline."""
    if isinstance(value, Text):
        return value if value.endswith("\n") else value + "\n"
    if fmt == "yaml":
        import yaml  # only paid for when asked for

        text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)
        # PyYAML ends a lone scalar document with "...": noise for a reader.
        if text.endswith("\n...\n"):
            text = text[: -len("...\n")]
        return text
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
