"""统一社会信用代码: the GB 32100-2015 check character (ledger.uscc)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from ledger.uscc import ALPHABET, WEIGHTS, check_character, complete, normalise, validate

# Worked example, GB 32100-2015 §5.2: for 91350100M000100Y4 the weighted sum of the
# character values is 1640; 1640 mod 31 = 28; 31 - 28 = 3; ALPHABET[3] = '3', so the
# code is 91350100M000100Y43 (the example code widely used to illustrate the standard).
KNOWN_GOOD = [
    "91350100M000100Y43",  # the example code widely used to illustrate GB 32100-2015
    complete("91510100MA6C00000"),  # 成都市 region code 510100, computed check character
    complete("12510000MB1234567"),  # a 事业单位 (authority 1, type 2) in 四川省
    complete("52510107MJ0000001"),  # a 社会组织 registered in 武侯区
]


def _by_hand(first17: str) -> str:
    total = sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def test_weights_are_powers_of_three_mod_31() -> None:
    """GB 32100-2015 §5.2: W_i = 3^(i-1) mod 31."""
    assert list(WEIGHTS) == [pow(3, i, 31) for i in range(17)]
    assert len(ALPHABET) == 31 and not set("IOSVZ") & set(ALPHABET)


@pytest.mark.parametrize("code", KNOWN_GOOD)
def test_valid_codes(code: str) -> None:
    assert validate(code) == code
    assert check_character(code[:17]) == _by_hand(code[:17]) == code[17]


def test_known_example_check_character() -> None:
    first17 = "91350100M000100Y4"
    assert sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) == 1640
    assert check_character(first17) == "3"


def test_wrong_check_character_names_position_and_expected() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate("91350100M000100Y44")
    err = caught.value
    assert err.reason == "INVALID_USCC"
    assert "character 18" in err.message and "should be '3'" in err.message
    assert err.details == {
        "uscc": "91350100M000100Y44",
        "position": "18",
        "found": "4",
        "expected": "3",
    }


@pytest.mark.parametrize(
    ("code", "position", "words"),
    [
        ("91350100M0001OOY43", "14", "never uses I, O, S, V or Z"),
        ("91350100m000100Y43", "9", "lower-case"),
        ("913501A0M000100Y43", "7", "must be a digit"),
        ("91350100M000100Y4#", "18", "not in the GB 32100 character set"),
    ],
)
def test_bad_character_is_named(code: str, position: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(code)
    assert caught.value.details["position"] == position
    assert words in caught.value.message
    assert f"character {position}" in caught.value.message


@pytest.mark.parametrize("code", ["", "9135010", "91350100M000100Y433", 913501, None])
def test_wrong_length_or_type(code: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(code)
    assert caught.value.reason == "INVALID_USCC"


def test_normalise_is_for_forms_only() -> None:
    assert normalise("  91350100m000100y43 ") == "91350100M000100Y43"
    with pytest.raises(InvalidInput):
        validate(" 91350100M000100Y43")


_chars = st.sampled_from(ALPHABET)


@given(
    st.text(alphabet=ALPHABET, min_size=2, max_size=2),
    st.text(alphabet="0123456789", min_size=6, max_size=6),
    st.text(alphabet=ALPHABET, min_size=9, max_size=9),
)
def test_every_completed_code_validates(head: str, region: str, org: str) -> None:
    code = complete(head + region + org)
    assert validate(code) == code


@given(
    st.text(alphabet="0123456789", min_size=6, max_size=6),
    st.text(alphabet=ALPHABET, min_size=9, max_size=9),
    st.integers(0, 16),
    _chars,
)
def test_any_single_substitution_is_caught(region: str, org: str, pos: int, char: str) -> None:
    """The check character catches every single-character error (31 is prime)."""
    code = complete("91" + region + org)
    if code[pos] == char or (2 <= pos <= 7 and not char.isdigit()):
        return
    bad = code[:pos] + char + code[pos + 1 :]
    with pytest.raises(InvalidInput) as caught:
        validate(bad)
    assert caught.value.details["position"] == "18"
