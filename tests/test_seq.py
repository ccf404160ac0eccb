"""``ledger.seq.Seq`` behaves as the list of what was appended, and an append never
changes the sequence it was made from (the fold's drafts rely on it)."""

from __future__ import annotations

import gc
import pickle

from hypothesis import given
from hypothesis import strategies as st
from immutables import Map

from ledger.seq import CHUNK, Seq


@given(st.lists(st.integers(), max_size=200), st.integers(-220, 220), st.integers(-220, 220))
def test_a_seq_reads_as_the_list_of_its_appends(items: list[int], i: int, j: int) -> None:
    made: Seq[int] = Seq()
    before = []
    for item in items:
        before.append(made)
        made = made.append(item)
    assert list(made) == items and len(made) == len(items)
    assert made[i:j] == items[i:j]
    if -len(items) <= i < len(items):
        assert made[i] == items[i]
    for n, earlier in enumerate(before):  # every earlier version is as it was
        assert list(earlier) == items[:n]
    assert made == Seq(items) and pickle.loads(pickle.dumps(made)) == made


def test_an_index_out_of_range_is_an_index_error() -> None:
    made = Seq([1, 2])
    for bad in (2, -3):
        try:
            made[bad]
        except IndexError:
            continue
        raise AssertionError(f"index {bad} read")


def test_the_collector_visits_a_few_objects_of_a_long_seq() -> None:
    """What the collector's traversal of a seq and of its map reaches is a handful of
    objects, however long the seq (a pyrsistent vector's traversal reaches every item: each
    young-generation collection walked a centre's whole list of claims)."""
    made = Seq(("nscc-cd", f"r{i}") for i in range(200_000)).append(("nscc-cd", "one more"))
    reached = gc.get_referents(made)  # its type, size, chunks (a map) and tail (a tuple)
    (chunks,) = [r for r in reached if isinstance(r, Map)]
    (tail,) = [r for r in reached if isinstance(r, tuple)]
    assert len(reached) <= 4 and len(gc.get_referents(chunks)) <= 32 and len(tail) < CHUNK
