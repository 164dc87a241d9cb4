"""Tests for graven.core.canonical: RFC 8785 bytes, checked against RFC vectors and rfc8785."""

from __future__ import annotations

import enum
import json
import math
import struct
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from graven.core.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalError,
    JSONValue,
    canonical,
    encode_reference,
    format_number,
    prepare,
)

# --------------------------------------------------------------------------------------------
# Strategies

# Characters that stress JCS: escapes, orjson's historical trouble spots, and both sides of the
# UTF-8 vs UTF-16 ordering split (U+E000..U+FFFF sort after astral characters in UTF-16 only).
_TRICKY = st.sampled_from(
    [
        *["\x00", "\x08", "\x1f", '"', "\\", "/", "\x7f", "\x80", "\u2028", "\u2029", "\ud7ff"],
        *["\ue000", "\ufb33", "\ufeff", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff"],
    ]
)
_CHARS = st.one_of(
    st.characters(codec="utf-8"),  # any code point except lone surrogates
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF),
    st.characters(min_codepoint=0x10000),
    _TRICKY,
)
_TEXT = st.text(_CHARS, max_size=12)
# A small key alphabet makes shared prefixes and ordering collisions likely.
_KEYS = st.one_of(_TEXT, st.text(st.sampled_from(["a", "b", "\x7f", "\ue000", "\U0001f600"])))
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.floats(allow_nan=False, allow_infinity=False),
    _TEXT,
)
_JSON: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(_KEYS, children, max_size=5)),
    max_leaves=40,
)
_FINITE = st.floats(allow_nan=False, allow_infinity=False)


def _from_bits(bits: int) -> float:
    value: float = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    return value


def _nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# --------------------------------------------------------------------------------------------
# Agreement with the reference and with the rfc8785 package


@settings(max_examples=600)
@given(_JSON)
def test_canonical_equals_reference_and_rfc8785(value: Any) -> None:
    """canonical() and encode_reference() produce the same bytes as the rfc8785 package."""
    expected = rfc8785.dumps(value)
    assert expected == encode_reference(value)
    assert expected == canonical(value)


@settings(max_examples=500)
@given(st.dictionaries(st.text(st.characters(max_codepoint=0xD7FF)), _SCALARS, max_size=8))
def test_orjson_sort_keys_is_utf16_order_below_d800(value: dict[str, Any]) -> None:
    """orjson OPT_SORT_KEYS orders keys made of characters below U+D800 exactly as JCS does."""
    prepared, keys_safe = prepare(value)
    assert keys_safe
    assert encode_reference(value) == orjson.dumps(prepared, option=orjson.OPT_SORT_KEYS)


def test_keys_at_or_above_d800_take_the_reference_path() -> None:
    """A key holding a character >= U+D800 is flagged unsafe and still sorted by UTF-16 units."""
    value: JSONValue = {"\ue000": 1, "\U0001f600": 2}
    prepared, keys_safe = prepare(value)
    assert not keys_safe
    # orjson sorts by UTF-8 bytes, which puts U+E000 first; UTF-16 puts the surrogate pair first.
    utf8_order = b'{"\xee\x80\x80":1,"\xf0\x9f\x98\x80":2}'
    assert utf8_order == orjson.dumps(prepared, option=orjson.OPT_SORT_KEYS)
    expected = b'{"\xf0\x9f\x98\x80":2,"\xee\x80\x80":1}'
    assert expected == canonical(value)


def test_every_code_point_is_written_as_jcs_requires() -> None:
    """Every non-surrogate code point in a string and in a key is written exactly as JCS says."""
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    value: JSONValue = {everything: everything}
    expected = rfc8785.dumps(value)
    assert expected == encode_reference(value)
    assert expected == canonical(value)
    assert expected == orjson.dumps(value)  # orjson's string escaping alone already agrees


def test_string_escapes_are_exactly_the_jcs_set() -> None:
    """Only quote, backslash and U+0000..U+001F are escaped; DEL, U+2028/9, '/' stay raw UTF-8."""
    value = '\x00\x07\b\t\n\x0b\f\r\x1f"\\/\x7f\u2028\u2029é😀'
    expected = (
        b'"\\u0000\\u0007\\b\\t\\n\\u000b\\f\\r\\u001f\\"\\\\/\x7f\xe2\x80\xa8\xe2\x80\xa9\xc3\xa9\xf0\x9f\x98\x80"'
    )
    assert expected == encode_reference(value)
    assert expected == canonical(value)


# --------------------------------------------------------------------------------------------
# RFC 8785 examples

# RFC 8785 Appendix B: IEEE-754 bit patterns and their required serialization (finite rows).
APPENDIX_B = [
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7FEFFFFFFFFFFFFF, "1.7976931348623157e+308"),
    (0xFFEFFFFFFFFFFFFF, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xC340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44B52D02C7E14AF5, "9.999999999999997e+22"),
    (0x44B52D02C7E14AF6, "1e+23"),
    (0x44B52D02C7E14AF7, "1.0000000000000001e+23"),
    (0x444B1AE4D6E2EF4E, "999999999999999700000"),
    (0x444B1AE4D6E2EF4F, "999999999999999900000"),
    (0x444B1AE4D6E2EF50, "1e+21"),
    (0x3EB0C6F7A0B5ED8C, "9.999999999999997e-7"),
    (0x3EB0C6F7A0B5ED8D, "0.000001"),
    (0x41B3DE4355555553, "333333333.3333332"),
    (0x41B3DE4355555554, "333333333.33333325"),
    (0x41B3DE4355555555, "333333333.3333333"),
    (0x41B3DE4355555556, "333333333.3333334"),
    (0x41B3DE4355555557, "333333333.33333343"),
    (0xBECBF647612F3696, "-0.0000033333333333333333"),
    (0x43143FF3C1CB0959, "1424953923781206.2"),  # round to even
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B, ids=[f"{b:016x}" for b, _ in APPENDIX_B])
def test_appendix_b_number_serialization(bits: int, expected: str) -> None:
    """format_number and both encoders reproduce each finite row of RFC 8785 Appendix B."""
    x = _from_bits(bits)
    assert expected == format_number(x)
    assert expected.encode() == canonical([x])[1:-1]
    assert expected.encode() == encode_reference(x)


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (1e20, "100000000000000000000"),  # 0x4415af1d78b58c40, largest fixed power of ten
        (12345678901234567e4, "123456789012345670000"),
        (1.2345678901234567e16, "12345678901234568"),  # Python's repr switches to e+16 here
        (1e-5, "0.00001"),  # ... and to e-05 here
        (1e21, "1e+21"),
        (1e16, "10000000000000000"),  # orjson would write 1e+16
        (2.0**60, "1152921504606847000"),  # integral but beyond 2**53: shortest digits, padded
        (1e-6, "0.000001"),  # orjson would write 1e-6
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (123.456, "123.456"),
        (1.0, "1"),
        (-0.0, "0"),
        (float(MAX_SAFE_INTEGER), "9007199254740991"),
        (0, "0"),
        (-42, "-42"),
        (MAX_SAFE_INTEGER, "9007199254740991"),
        (-MAX_SAFE_INTEGER, "-9007199254740991"),
    ],
)
def test_format_number_known_ecmascript_outputs(x: int | float, expected: str) -> None:
    """format_number matches what ECMAScript Number.prototype.toString prints for these values."""
    assert expected == format_number(x)


@settings(max_examples=3000)
@given(_FINITE)
def test_format_number_round_trips(x: float) -> None:
    """Parsing format_number(x) gives back x exactly (its digits lose nothing)."""
    assert x == float(format_number(x))


@settings(max_examples=3000)
@given(_FINITE)
def test_format_number_equals_rfc8785(x: float) -> None:
    """format_number agrees with the rfc8785 package on arbitrary finite floats."""
    assert rfc8785.dumps(x).decode() == format_number(x)


def test_rfc_sorting_example() -> None:
    """The RFC 8785 section 3.2.3 object sorts its keys by UTF-16 code units as the RFC shows."""
    value: JSONValue = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    assert expected == encode_reference(value)
    assert expected == canonical(value)


def test_rfc_sample_input_gives_the_printed_bytes() -> None:
    """The RFC 8785 section 3.2.2 sample input canonicalizes to the bytes printed in 3.2.4."""
    text = r"""{
       "numbers": [333333333.33333329, 1E30, 4.50,
                   2e-3, 0.000000000000000000000000001],
       "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
       "literals": [null, true, false]
     }"""
    expected = bytes.fromhex(
        "7b226c69746572616c73223a5b6e756c6c2c747275652c66616c73655d2c226e756d62657273223a"
        "5b3333333333333333332e333333333333332c31652b33302c342e352c302e3030322c31652d3237"
        "5d2c22737472696e67223a22e282ac245c75303030665c6e4127425c225c5c5c5c5c222f227d"
    )
    value = json.loads(text)
    assert expected == encode_reference(value)
    assert expected == canonical(value)


# --------------------------------------------------------------------------------------------
# Preparation details


def test_prepare_replaces_floats_and_leaves_input_alone() -> None:
    """prepare() swaps floats for ints or fragments in copies, never mutating the input."""
    inner: dict[str, JSONValue] = {"ratio": 0.5, "count": 2.0, "zero": -0.0}
    value: dict[str, JSONValue] = {"a": [1.0, "x"], "b": inner, "c": "text"}
    snapshot = json.dumps(value)
    prepared, keys_safe = prepare(value)
    assert keys_safe
    assert snapshot == json.dumps(value)
    assert isinstance(prepared, dict)
    expected_list = [1, "x"]
    assert expected_list == prepared["a"]
    assert type(prepared["a"][0]) is int
    assert isinstance(prepared["b"]["ratio"], orjson.Fragment)
    expected_ints = {"count": 2, "zero": 0}
    assert expected_ints == {k: v for k, v in prepared["b"].items() if k != "ratio"}
    assert all(type(v) is int for v in expected_ints.values())


def test_prepare_does_not_copy_float_free_values() -> None:
    """prepare() returns the input itself when nothing in it needs rewriting."""
    value: JSONValue = {"a": ["x", 1, True, None, {"b": "ü"}], "c": {}}
    prepared, keys_safe = prepare(value)
    assert keys_safe
    assert value is prepared


def test_scalars_and_empty_containers() -> None:
    """Top-level scalars and empty containers encode as their JSON literals."""
    for value, expected in [(None, b"null"), (True, b"true"), (False, b"false"), ("", b'""'),
                            ([], b"[]"), ({}, b"{}"), (7, b"7"), (2.5, b"2.5")]:  # fmt: skip
        assert expected == encode_reference(value)
        assert expected == canonical(value)


class _Colour(enum.StrEnum):
    RED = "red"


class _Legacy(str, enum.Enum):  # noqa: UP042 - the pre-3.11 idiom, whose str() is "_Legacy.BLUE"
    BLUE = "blue"


class _Level(enum.IntEnum):
    HIGH = 3


class _Dict(dict[str, Any]):
    pass


class _List(list[Any]):
    pass


class _Float(float):
    pass


def test_subclasses_of_json_types_encode_as_their_plain_values() -> None:
    """StrEnum/str-Enum/IntEnum and dict/list/float subclasses encode as the plain value held."""
    value: Any = _Dict({_Colour.RED: _List([_Legacy.BLUE, _Level.HIGH, _Float(0.5)]), _Legacy.BLUE: _Float(2.0)})
    expected = b'{"blue":2,"red":["blue",3,0.5]}'
    assert expected == encode_reference(value)
    assert expected == canonical(value)


def test_beyond_orjson_depth_limit_still_encodes() -> None:
    """Nesting deeper than orjson's 254-level limit falls back to the reference encoder."""
    value = _nested_lists(300)
    expected = b"[" * 301 + b"]" * 301
    assert expected == encode_reference(value)
    assert expected == canonical(value)


def test_absurd_nesting_is_a_canonical_error() -> None:
    """Nesting too deep for the interpreter's stack is reported as CanonicalError."""
    value = _nested_lists(100_000)
    with pytest.raises(CanonicalError, match="nested too deeply"):
        canonical(value)
    with pytest.raises(CanonicalError, match="nested too deeply"):
        encode_reference(value)


# --------------------------------------------------------------------------------------------
# Rejections


class _Key(str):
    """A str whose identity-based equality lets it sit beside an equal plain str in a dict."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "NaN is not a JSON number at the top level"),
        (math.inf, "inf is not a JSON number"),
        (-math.inf, "-inf is not a JSON number"),
        (2**53, "integer 9007199254740992 is outside"),
        (-(2**53), "integer -9007199254740992 is outside"),
        ({1: "x"}, "object key 1 \\(int\\) is not a string"),
        ({_Key("a"): 1, "a": 2}, "object key 'a' occurs twice"),
        ("\ud800", "string contains a lone surrogate U\\+D800"),
        ("\ud83d\ude00", "string contains a lone surrogate U\\+D83D"),  # a pair spelled as two
        ({"k\udfff": 1}, "object key contains a lone surrogate U\\+DFFF"),
        ({1, 2}, "set is not a JSON type"),
        ((1, 2), "tuple is not a JSON type \\(use a list\\)"),
        (object(), "object is not a JSON type"),
        (b"bytes", "bytes is not a JSON type"),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_unencodable_values_are_rejected(value: Any, message: str) -> None:
    """Each value JCS cannot encode raises CanonicalError naming the problem, on every path."""
    with pytest.raises(CanonicalError, match=message):
        canonical(value)
    with pytest.raises(CanonicalError, match=message):
        encode_reference(value)
    with pytest.raises(CanonicalError, match=message):
        prepare(value)


def test_error_names_the_path_to_the_bad_value() -> None:
    """A CanonicalError carries the path of the offending value and shows it in its message."""
    value: Any = {"metadata": {"items": [0, 1, 2, math.nan]}, "odd key": [{"x": 2**60}]}
    for encode in (canonical, encode_reference):
        with pytest.raises(CanonicalError) as caught:
            encode({"metadata": value["metadata"]})
        expected_path = ("metadata", "items", 3)
        assert expected_path == caught.value.path
        expected = "NaN is not a JSON number at metadata.items[3]"
        assert expected == str(caught.value)
        with pytest.raises(CanonicalError) as caught:
            encode({"odd key": value["odd key"]})
        expected = 'integer 1152921504606846976 is outside the I-JSON safe range +-(2**53 - 1) at ["odd key"][0].x'
        assert expected == str(caught.value)


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf, 2**53, -(2**53), True])
def test_format_number_rejects_what_has_no_jcs_form(x: Any) -> None:
    """format_number refuses NaN, infinities, unsafe integers and bools."""
    with pytest.raises(CanonicalError):
        format_number(x)


def test_canonical_error_is_a_value_error() -> None:
    """CanonicalError subclasses ValueError so generic validation handlers catch it."""
    assert issubclass(CanonicalError, ValueError)
