"""JSON text for line-based readers: every JSON or JSON Lines output of Graven goes through here.

JSON allows U+0085, U+2028 and U+2029 raw inside strings, but ``str.splitlines()`` (and many
line readers) split on them, cutting one record in two. :func:`dumps` MUST therefore emit them
as ``\\uXXXX`` escapes; every other character str.splitlines() splits on (U+000A, U+000B,
U+000C, U+000D, U+001C..U+001E) is a control character JSON already escapes. The parsed value is
unchanged, so the leaf (the RFC 8785 encoding of the parsed entry) is unchanged too: a verifier
re-canonicalises the parsed object, it never hashes these bytes. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["LINE_BREAKS", "dumps", "line"]

LINE_BREAKS = "\x85\u2028\u2029"
"""Characters str.splitlines() splits on that JSON does not escape by itself."""

# Each is one UTF-8 sequence that cannot occur inside another character's encoding, and in JSON
# text it can only stand inside a string, where its \\u escape means the same character.
_ESCAPES = tuple((c.encode("utf-8"), f"\\u{ord(c):04x}".encode("ascii")) for c in LINE_BREAKS)


def dumps(value: Any, *, indent: bool = False) -> bytes:
    """``value`` as UTF-8 JSON (orjson's encoding) without any raw line-breaking character."""
    data = orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else None)
    for raw, escaped in _ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def line(value: Any) -> bytes:
    """One JSON Lines record: :func:`dumps` of ``value`` and a newline."""
    return dumps(value) + b"\n"
