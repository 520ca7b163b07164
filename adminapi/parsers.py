"""The one body format of the /admin API: a JSON document of bounded nesting.

Our request bodies are at most three levels deep (``{"changes": {"universe": [...]}}``).
Python's ``json`` recurses once per level, so a few kilobytes of ``[[[[...]]]]`` end in a
``RecursionError`` — a 500 — instead of a parse error. Any document nested deeper than
``MAX_JSON_DEPTH`` is refused as a 400 before a serializer (or a ``repr`` in an error
message) can walk it.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 32


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists/objects more than ``limit`` levels deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class BoundedJSONParser(JSONParser):
    """``application/json`` only, nested at most ``MAX_JSON_DEPTH`` levels."""

    def parse(self, stream, media_type=None, parser_context=None):
        too_deep = ParseError(f"JSON body is nested more than {MAX_JSON_DEPTH} levels deep")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise too_deep
        return data
