"""统一社会信用代码 (unified social credit code), checked as GB 32100-2015 specifies.

A code is 18 characters from the 31-character set ``0-9 A-H J-N P-R T U W-Y`` (no I, O,
S, V, Z):

====== ============================================================
1      登记管理部门码 (registration authority)
2      机构类别码 (entity type within that authority)
3-8    登记管理机关行政区划码 (administrative division code, digits)
9-17   主体标识码 (organisation code, GB 11714)
18     校验码 (check character)
====== ============================================================

The check character: give each of the first 17 characters its index in the character set
(0-30), multiply by the weights 3^(i-1) mod 31 (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25,
13, 8, 24, 10, 30, 28), sum, and take ``31 - (sum mod 31)``; 31 becomes 0. That index in
the set is the 18th character.

The ledger stores codes upper-case exactly as validated; :func:`normalise` (strip and
upper-case) is for input forms, never applied silently inside the fold.
"""

from __future__ import annotations

from ledger.errors import InvalidInput

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
LENGTH = 18
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_EXCLUDED = "IOSVZ"


def _bad(code: str, message: str, **details: object) -> InvalidInput:
    return InvalidInput(
        f"统一社会信用代码 {code!r}: {message}",
        reason="INVALID_USCC",
        details={"uscc": code, **details},
    )


def check_character(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a code."""
    if len(first17) != LENGTH - 1 or any(c not in _VALUE for c in first17):
        raise InvalidInput("need exactly 17 characters from the GB 32100 character set")
    total = sum(_VALUE[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def complete(first17: str) -> str:
    """The full 18-character code: ``first17`` and its check character (tests, fixtures)."""
    return first17 + check_character(first17)


def normalise(text: str) -> str:
    """Strip surrounding blanks and upper-case: for forms, before :func:`validate`."""
    return text.strip().upper()


def validate(code: object) -> str:
    """Return ``code`` if it is a valid 统一社会信用代码, else raise InvalidInput.

    The message names the first wrong character (1-based position) and, for a wrong check
    character, the character it should be.
    """
    if not isinstance(code, str):
        raise InvalidInput(
            f"统一社会信用代码 must be a string, got {code!r}", reason="INVALID_USCC"
        )
    if len(code) != LENGTH:
        raise _bad(code, f"has {len(code)} characters; it must have {LENGTH}", length=len(code))
    for position, char in enumerate(code, start=1):
        if char not in _VALUE:
            if char.upper() in _VALUE:
                why = "lower-case letters are not allowed (write it upper-case)"
            elif char.upper() in _EXCLUDED:
                why = "GB 32100 never uses I, O, S, V or Z"
            else:
                why = "it is not in the GB 32100 character set (0-9 and A-Y without I O S V Z)"
            raise _bad(
                code, f"character {position} {char!r} is not allowed: {why}", position=position
            )
    for position in range(3, 9):
        if not code[position - 1].isdigit():
            raise _bad(
                code,
                f"character {position} {code[position - 1]!r} must be a digit "
                "(characters 3-8 are the administrative division code)",
                position=position,
            )
    expected = check_character(code[:17])
    if code[17] != expected:
        raise _bad(
            code,
            f"character 18 (the check character) is {code[17]!r}; "
            f"for the first 17 characters it should be {expected!r}",
            position=18,
            found=code[17],
            expected=expected,
        )
    return code
