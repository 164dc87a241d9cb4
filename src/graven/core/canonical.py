"""RFC 8785 (JSON Canonicalization Scheme) encoding of audit values.

Guarantees:

- ``canonical(v)`` and ``encode_reference(v)`` MUST return byte-identical output for every
  value either accepts, and that output MUST be exactly the RFC 8785 encoding of ``v``: UTF-8,
  no whitespace, object members sorted by the UTF-16 code units of their names, strings
  escaping only ``"``, ``\\`` and U+0000..U+001F, numbers in ECMAScript ``Number.toString`` form.
- Values JCS cannot represent MUST be rejected with ``CanonicalError`` (never encoded
  approximately): NaN and infinities, integers beyond +-(2**53 - 1), strings or keys holding
  lone surrogates, non-string object keys, and anything that is not None, bool, int, float,
  str, list or dict. Subclasses of str, int, float, list and dict (e.g. ``StrEnum``,
  ``IntEnum``) are encoded as the plain value they hold; tuples are rejected.
- Every function is pure: no I/O, no global state, inputs are never mutated.
"""

from __future__ import annotations

import math
import re
from typing import Any, TypeAlias

import orjson

__all__ = [
    "MAX_SAFE_INTEGER",
    "CanonicalError",
    "JSONValue",
    "canonical",
    "encode_reference",
    "format_number",
    "prepare",
]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

MAX_SAFE_INTEGER = 2**53 - 1
_MIN_SAFE = -MAX_SAFE_INTEGER

PathPart: TypeAlias = str | int

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class CanonicalError(ValueError):
    """A value that RFC 8785 cannot encode; ``path`` locates it inside the top-level value."""

    def __init__(self, reason: str, path: tuple[PathPart, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def __str__(self) -> str:
        return f"{self.reason} at {_format_path(self.path)}"

    def _within(self, parent: PathPart) -> None:
        """Record that the offending value sits under ``parent`` (called while unwinding)."""
        self.path = (parent, *self.path)


def _format_path(path: tuple[PathPart, ...]) -> str:
    if not path:
        return "the top level"
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f'["{part.translate(_PATH_ESCAPES)}"]')
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Numbers


def format_number(x: int | float) -> str:
    """Return ECMAScript ``Number.prototype.toString(x)``, as RFC 8785 section 3.2.2.3 requires.

    Integral values have no fraction ("1" for 1.0, "0" for -0.0); other values use the shortest
    digits that round-trip, in fixed notation for 1e-6 <= |x| < 1e21 and exponent form
    ("1e+21", "1.5e-7") otherwise. Raises CanonicalError for NaN, infinities, bools, and ints
    outside +-MAX_SAFE_INTEGER.
    """
    if type(x) is float:
        if _MIN_SAFE <= x <= MAX_SAFE_INTEGER and x.is_integer():
            return str(int(x))  # exact, and also the shortest round-trip digits
        return _format_float(x)
    if type(x) is int:
        if _MIN_SAFE <= x <= MAX_SAFE_INTEGER:
            return str(x)
        raise _unsafe_integer(x)
    if isinstance(x, bool):
        raise CanonicalError("bool is not a JSON number")
    if isinstance(x, int):
        return format_number(int.__int__(x))
    if isinstance(x, float):
        return format_number(float.__float__(x))
    raise CanonicalError(f"{type(x).__name__} is not a JSON number")


def _unsafe_integer(x: int) -> CanonicalError:
    return CanonicalError(f"integer {x} is outside the I-JSON safe range +-(2**53 - 1)")


def _format_float(x: float) -> str:
    if not math.isfinite(x):
        raise CanonicalError(f"{'NaN' if x != x else x} is not a JSON number")
    if x == 0:
        return "0"
    # repr() yields the shortest digit string that round-trips, choosing the closest (then even)
    # candidate: the same digits ECMAScript picks. Only the layout can differ.
    text = repr(x)
    if "e" not in text:
        # repr() uses fixed notation exactly for 1e-4 <= |x| < 1e16, well inside ECMAScript's
        # fixed range, and lays the digits out identically except for a trailing ".0".
        return text[:-2] if text.endswith(".0") else text
    # Exponent form "d.ddde-07" or "de+16": the first digit is non-zero and the point follows it.
    mantissa, _, exponent = repr(abs(x)).partition("e")
    digits = mantissa.replace(".", "").rstrip("0")
    n = int(exponent) + 1  # now |x| == 0.<digits> * 10**n, ECMAScript's s * 10**(n - k)
    k = len(digits)
    # ECMAScript Number::toString steps 6-10 (the first two cannot occur after an exponent-form
    # repr, which only happens for |x| < 1e-4 or |x| >= 1e16, but are kept to mirror the spec).
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        e = n - 1
        sign = "+" if e >= 0 else "-"
        fraction_part = f".{digits[1:]}" if k > 1 else ""
        body = f"{digits[0]}{fraction_part}e{sign}{abs(e)}"
    return "-" + body if x < 0 else body


# --------------------------------------------------------------------------------------------
# Strings and shared helpers

_ESCAPES: dict[int, str] = {code: f"\\u{code:04x}" for code in range(0x20)}
_ESCAPES.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"})


# Paths end up in messages and logs, so they also spell lone surrogates as escapes.
_PATH_ESCAPES = {**_ESCAPES, **{code: f"\\u{code:04x}" for code in range(0xD800, 0xE000)}}


def _check_text(s: str, what: str) -> None:
    """Reject a string that holds a lone surrogate (it has no UTF-8 form)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(exc.object[exc.start])
        raise CanonicalError(f"{what} contains a lone surrogate U+{code:04X}") from None


def _quote(s: str, *, check: bool = True) -> str:
    if check:
        _check_text(s, "string")
    return '"' + s.translate(_ESCAPES) + '"'


def _coerce(value: object) -> object:
    """Return the plain JSON value held by a subclass of a JSON type; reject anything else."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):  # bool cannot be subclassed, so this is a true int subclass
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, list):
        return list.copy(value)
    if isinstance(value, dict):
        return dict(dict.items(value))
    hint = " (use a list)" if isinstance(value, tuple) else ""
    raise CanonicalError(f"{type(value).__name__} is not a JSON type{hint}")


def _rekeyed(d: dict[Any, Any]) -> dict[str, Any]:
    """Copy ``d`` with every key made a plain str; reject non-str keys and resulting clashes."""
    out: dict[str, Any] = {}
    for key, item in d.items():
        if not isinstance(key, str):
            raise CanonicalError(f"object key {key!r} ({type(key).__name__}) is not a string")
        plain = str.__str__(key)
        if plain in out:
            raise CanonicalError(f"object key {plain!r} occurs twice once made a plain str")
        out[plain] = item
    return out


# --------------------------------------------------------------------------------------------
# Reference encoder


def encode_reference(value: JSONValue) -> bytes:
    """Encode ``value`` per RFC 8785 with a plain recursive walk (the oracle and the fallback)."""
    out: list[str] = []
    try:
        _ref(value, out)
    except RecursionError:
        raise CanonicalError("value is nested too deeply to encode") from None
    return "".join(out).encode("utf-8")


def _ref(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif type(value) is int or type(value) is float:
        out.append(format_number(value))
    elif type(value) is str:
        out.append(_quote(value))
    elif type(value) is list:
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            try:
                _ref(item, out)
            except CanonicalError as exc:
                exc._within(index)
                raise
        out.append("]")
    elif type(value) is dict:
        if not all(type(key) is str for key in value):
            value = _rekeyed(value)
        for key in value:
            try:
                _check_text(key, "object key")
            except CanonicalError as exc:
                exc._within(key)
                raise
        # Big-endian UTF-16 bytes compare exactly like sequences of UTF-16 code units.
        members = sorted(value.items(), key=lambda member: member[0].encode("utf-16-be"))
        out.append("{")
        for index, (key, item) in enumerate(members):
            if index:
                out.append(",")
            out.append(_quote(key, check=False))
            out.append(":")
            try:
                _ref(item, out)
            except CanonicalError as exc:
                exc._within(key)
                raise
        out.append("}")
    else:
        _ref(_coerce(value), out)


# --------------------------------------------------------------------------------------------
# Fast path: validate and prepare for orjson in one walk
#
# orjson already writes strings exactly as JCS does (only '"', '\\' and U+0000..U+001F escaped,
# with the same short forms and lowercase \u00XX; U+007F, U+2028/9, '/' and non-ASCII raw) and
# OPT_SORT_KEYS orders keys by UTF-8 bytes, which equals UTF-16 code-unit order unless a key
# holds a character >= U+D800. What orjson gets wrong is floats (it writes "1.0", "-0.0",
# "1e+16" and "1e-6" where ECMAScript writes "1", "0", "10000000000000000" and "0.000001"), so
# every float becomes an int or a Fragment rendered by format_number. The walk copies a container
# only when something inside it had to change.


def prepare(value: JSONValue) -> tuple[object, bool]:
    """Validate ``value`` and return ``(prepared, keys_safe)`` for ``canonical``.

    ``prepared`` is ready for ``orjson.dumps(prepared, option=orjson.OPT_SORT_KEYS)``; it shares
    unchanged containers with ``value``, so neither may be mutated while the other is in use.
    ``keys_safe`` is False when some object key holds a character >= U+D800, where orjson's
    key order may differ from RFC 8785's. Raises CanonicalError for anything JCS cannot encode.
    """
    keys_safe = [True]
    try:
        if type(value) is dict:
            prepared: object = _prep_dict(value, keys_safe)
        else:
            prepared = _prep_value(value, keys_safe)
    except RecursionError:
        raise CanonicalError("value is nested too deeply to encode") from None
    return prepared, keys_safe[0]


def canonical(value: JSONValue) -> bytes:
    """Return the RFC 8785 encoding of ``value``: always equal to ``encode_reference(value)``."""
    prepared, keys_safe = prepare(value)
    if keys_safe:
        try:
            return orjson.dumps(prepared, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # orjson refuses nesting deeper than 254 levels; the reference has no such limit
    return encode_reference(value)


def _prep_value(value: Any, keys_safe: list[bool]) -> object:
    t = type(value)
    if t is str:
        if not value.isascii():
            _check_text(value, "string")
        return value
    if t is dict:
        return _prep_dict(value, keys_safe)
    if t is list:
        return _prep_list(value, keys_safe)
    if t is int:
        if _MIN_SAFE <= value <= MAX_SAFE_INTEGER:
            return value
        raise _unsafe_integer(value)
    if t is bool or value is None:
        return value
    return _prep_other(value, keys_safe)


def _prep_other(value: Any, keys_safe: list[bool]) -> object:
    """Floats, subclasses of JSON types, and rejections: the rare cases, kept off the hot loop."""
    if type(value) is float:
        if _MIN_SAFE <= value <= MAX_SAFE_INTEGER and value.is_integer():
            return int(value)  # orjson writes ints exactly as ECMAScript does
        return orjson.Fragment(_format_float(value))
    return _prep_value(_coerce(value), keys_safe)


def _prep_key(key: str, keys_safe: list[bool]) -> None:
    _check_text(key, "object key")
    if max(key) >= "\ud800":
        keys_safe[0] = False


def _prep_dict(d: dict[Any, Any], keys_safe: list[bool]) -> dict[str, object]:
    out: dict[str, object] | None = None
    try:
        for key, value in d.items():
            if type(key) is not str:
                break
            if not key.isascii():
                _prep_key(key, keys_safe)
            prepared = _prep_value(value, keys_safe)
            if prepared is not value:
                if out is None:
                    out = d.copy()
                out[key] = prepared
        else:
            return d if out is None else out
    except CanonicalError as exc:
        exc._within(key)
        raise
    # Some key is not exactly a str: rebuild with plain-str keys (or reject), then walk that.
    return _prep_dict(_rekeyed(d), keys_safe)


def _prep_list(items: list[Any], keys_safe: list[bool]) -> list[object]:
    out: list[object] | None = None
    try:
        for index, value in enumerate(items):
            prepared = _prep_value(value, keys_safe)
            if prepared is not value:
                if out is None:
                    out = items.copy()
                out[index] = prepared
    except CanonicalError as exc:
        exc._within(index)
        raise
    return items if out is None else out
