"""format_micros (the fast path of history views) is format_time of the same instant."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ledger.timeutil import format_micros, format_time, from_micros, to_micros

LOW = to_micros(datetime(1970, 1, 1, tzinfo=UTC))
HIGH = to_micros(datetime(2099, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))


@given(st.integers(min_value=LOW, max_value=HIGH))
def test_format_micros_is_format_time(micros: int) -> None:
    assert format_micros(micros) == format_time(from_micros(micros))


def test_edges_of_a_day() -> None:
    midnight = to_micros(datetime(2024, 2, 29, tzinfo=UTC))
    assert format_micros(midnight) == "2024-02-29T00:00:00.000000Z"
    assert format_micros(midnight - 1) == "2024-02-28T23:59:59.999999Z"
