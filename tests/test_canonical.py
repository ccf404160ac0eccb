"""RFC 8785 (JCS) canonical JSON, checked against the ``rfc8785`` reference implementation."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from ledger.canonical import MAX_SAFE_INT, canonical_bytes, canonical_flat, parse_canonical
from ledger.errors import InvalidInput

# Keys and strings from the whole of Unicode (minus lone surrogates), including the
# U+E000..U+FFFF and supplementary-plane characters where UTF-16 and code-point order differ.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
order_sensitive = st.sampled_from(["\ue000", "\uffff", "\U0001f600", "a", "\u00e9", "中"])
keys = st.one_of(text, st.lists(order_sensitive, min_size=1, max_size=3).map("".join))
ints = st.integers(-MAX_SAFE_INT, MAX_SAFE_INT)
json_values = st.recursive(
    st.none() | st.booleans() | ints | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


@given(json_values)
def test_matches_the_reference_implementation(value: object) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


@given(st.lists(text | ints | json_values, max_size=4))
def test_a_flat_array_is_written_as_the_reference_does(items: list[object]) -> None:
    assert canonical_flat(items) == rfc8785.dumps(items) == canonical_bytes(items)


@pytest.mark.parametrize("items", [["s", 1.5], ["s", 2**53], ["\ud800", "n", 1], [True, {1: 2}]])
def test_a_flat_array_refuses_what_jcs_cannot_say(items: list[object]) -> None:
    with pytest.raises(InvalidInput):
        canonical_flat(items)


@given(json_values)
def test_parse_accepts_exactly_the_canonical_form(value: object) -> None:
    data = rfc8785.dumps(value)
    assert parse_canonical(data) == json.loads(data)
    spaced = json.dumps(value, ensure_ascii=False, indent=1).encode()
    if spaced != data:
        with pytest.raises(InvalidInput):
            parse_canonical(spaced)


def test_utf16_key_order() -> None:
    # U+E000 sorts after U+1F600 by code point but before it by UTF-16 (0xD83D).
    obj = {"\ue000": 1, "\U0001f600": 2}
    assert canonical_bytes(obj) == '{"\U0001f600":2,"\ue000":1}'.encode()
    with pytest.raises(InvalidInput, match="canonical"):
        parse_canonical('{"\ue000":1,"\U0001f600":2}'.encode())


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1.5}',  # a float
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":9007199254740992}',  # 2^53: outside I-JSON
        b'{"b":1,"a":2}',  # unsorted
        b'{"a":1,"a":1}',  # duplicate member
        b'{"a": 1}',  # whitespace
        b'{"a":"\\u0041"}',  # needless escape
        b"\xff",  # not UTF-8
    ],
)
def test_parse_refuses_non_canonical_or_non_ledger_json(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_canonical(data)


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        {"a": float("nan")},
        2**53,
        -(2**53),
        {1: "x"},
        "\ud800",
        b"x",
        {"a": [1, {"b": 1.5}]},  # deep inside an otherwise plain value
        {"a": ["\udc00"]},
        {"a": {True: 1}},
    ],
)
def test_canonical_bytes_refuses_what_jcs_cannot_say(value: object) -> None:
    with pytest.raises(InvalidInput):
        canonical_bytes(value)


def test_control_characters_escape_as_jcs_does() -> None:
    value = {"s": '\b\f\n\r\t\x00\x1f"\\/\x7f\u2028'}
    assert canonical_bytes(value) == rfc8785.dumps(value)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=5), stamped=st.booleans())
def test_an_entry_is_its_canonical_bytes_however_it_was_made(body, stamped) -> None:  # type: ignore[no-untyped-def]
    """Entry.to_bytes splices logged and sigs into the signed part's JCS (computed once):
    always exactly the JCS of the whole entry, and it parses back to the same entry."""
    from ledger.entry import Entry
    from ledger.keys import Signer

    entry = Entry("log.note", "2023-08-20T02:00:00.000000Z", body).signed(Signer("k", bytes(32)))
    if stamped:
        entry = entry.stamped("2023-08-20T02:00:01.000000Z")
    assert entry.to_bytes() == canonical_bytes(entry.to_json())
    assert Entry.from_bytes(entry.to_bytes()) == entry


def test_an_entry_copy_keeps_every_field_and_changes_only_what_it_is_told() -> None:
    import dataclasses

    from ledger.entry import _FIELDS, Entry

    assert {f.name for f in dataclasses.fields(Entry)} == _FIELDS
    entry = Entry("log.note", "2023-08-20T02:00:00.000000Z", {"text": "x"}).disclosed(("d",))
    stamped = entry.stamped("2023-08-20T02:00:01.000000Z")
    assert stamped.logged == "2023-08-20T02:00:01.000000Z" and entry.logged is None
    assert (stamped.kind, stamped.at, stamped.body, stamped.disclosures) == (
        entry.kind,
        entry.at,
        entry.body,
        entry.disclosures,
    )
    with pytest.raises(TypeError):
        entry._copy(nonsense=1)


_BYTES_THAT_MATTER = st.lists(
    st.sampled_from([b"0", b"5", b"9", b"a", b'"', b"\xee", b"\xef", b"\xf0", b"\xf4", b"\xe9",
                     b"\xc3", b"\x7f", b"-", b"."]),
    max_size=60,
).map(b"".join)  # fmt: skip


@given(st.one_of(_BYTES_THAT_MATTER, st.binary(max_size=80)))
def test_needs_full_check_is_the_lead_byte_or_digit_run_rule(data: bytes) -> None:
    """The two-pass check says exactly what the one regular expression it replaced says."""
    import re

    from ledger.canonical import needs_full_check

    rule = re.compile(rb"[\xee\xef\xf0-\xf4]|[0-9]{16}")
    assert needs_full_check(data) == (rule.search(data) is not None)


def test_needs_full_check_at_the_edges() -> None:
    from ledger.canonical import needs_full_check

    assert not needs_full_check(b'{"n":' + b"9" * 15 + b"}")
    assert needs_full_check(b'{"n":' + b"1" + b"0" * 15 + b"}")
    assert needs_full_check('{"s":"\ue000"}'.encode())
    assert needs_full_check('{"s":"😀"}'.encode())
    assert not needs_full_check('{"s":"成都"}'.encode())
