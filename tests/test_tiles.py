"""ledger.tiles: C2SP tlog-tiles paths, tile arithmetic and entry bundles.

source: tests/vectors/c2sp/c2sp_examples.json (tile_count_example, tile_index_path_example;
        C2SP tlog-tiles.md, CC BY 4.0) and tests/vectors/go-sumdb-note/note_vectors.json
        (sumdb_tile_paths, golang.org/x/mod sumdb/tlog tests, BSD-3-Clause: used for the
        xNNN index encoding only, since C2SP drops the height segment).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from ledger.merkle import CompactRange, leaf_hash, root_from_leaf_hashes
from ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileRef,
    encode_index,
    entries_path,
    entry_bundle,
    parse_entry_bundle,
    parse_index,
    parse_tile_path,
    partial_width,
    tile_node_ids,
    tile_path,
    tiles_for_size,
)

VECTORS = Path(__file__).parent / "vectors"
C2SP: dict[str, Any] = json.loads((VECTORS / "c2sp" / "c2sp_examples.json").read_text("utf-8"))
SUMDB: dict[str, Any] = json.loads(
    (VECTORS / "go-sumdb-note" / "note_vectors.json").read_text("utf-8")
)
U64 = 1 << 64


# --- spec examples -----------------------------------------------------------------------------


def test_tile_count_example() -> None:
    ex = C2SP["tile_count_example"]
    tiles = tiles_for_size(ex["tree_size"])
    full = Counter(t.level for t in tiles if not t.is_partial)
    partial = {t.level: t.width for t in tiles if t.is_partial}
    assert full == {0: ex["full_level0_tiles"], 1: ex["full_level1_tiles"]}
    assert partial == {
        0: ex["partial_level0_width"],
        1: ex["partial_level1_width"],
        2: ex["partial_level2_width"],
    }
    assert len(tiles) == 273 + 1 + 1 + 1 + 1
    assert [t.n for t in tiles if t.level == 0] == list(range(274))
    for t in tiles:
        assert partial_width(t.level, t.n, ex["tree_size"]) == t.width
        assert not t.is_entries


def test_tile_count_example_size_256() -> None:
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1
    # tile of width 1"
    assert tiles_for_size(256) == [TileRef(0, 0, 256, False), TileRef(1, 0, 1, False)]
    assert tiles_for_size(0) == []
    assert tiles_for_size(1) == [TileRef(0, 0, 1, False)]


def test_tile_index_path_example() -> None:
    ex = C2SP["tile_index_path_example"]
    assert encode_index(ex["index"]) == ex["path_element"]
    assert parse_index(ex["path_element"]) == ex["index"]
    assert tile_path(0, ex["index"]) == "tile/0/x001/x234/067"
    assert tile_path(1, 5, 17) == "tile/1/005.p/17"
    assert entries_path(0, 5) == "tile/entries/000.p/5"
    assert entries_path(0, 256) == entries_path(0) == "tile/entries/000"


def _c2sp_from_sumdb(path: str) -> str:
    """tile/H/L/N... -> tile/L/N... and tile/H/data/N... -> tile/entries/N..."""
    _, _, level, rest = path.split("/", 3)
    return f"tile/{'entries' if level == 'data' else level}/{rest}"


@pytest.mark.parametrize("case", SUMDB["sumdb_tile_paths"]["cases"], ids=lambda c: c[0])
def test_sumdb_index_encoding(case: list[Any]) -> None:
    path, want = case
    c2sp_path = _c2sp_from_sumdb(path)
    if want is None:
        with pytest.raises(InvalidInput):
            parse_tile_path(c2sp_path)
        return
    ref = parse_tile_path(c2sp_path)
    assert ref.n == want["N"]
    assert ref.is_entries == (want["L"] == -1)
    assert ref.level == max(want["L"], 0)
    # Go's full-tile width is 2**H; C2SP's is always 256, so only .p widths carry over.
    assert ref.width == (want["W"] if ".p/" in path else TILE_WIDTH)
    assert ref.path == c2sp_path


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (U64 - 1, None)],
)
def test_encode_index(n: int, text: str | None) -> None:
    got = encode_index(n)
    if text is not None:
        assert got == text
    assert parse_index(got) == n


@given(st.integers(0, U64 - 1))
def test_index_round_trip(n: int) -> None:
    text = encode_index(n)
    assert parse_index(text) == n
    elements = text.split("/")
    assert all(len(e) == 4 and e[0] == "x" for e in elements[:-1])
    assert len(elements[-1]) == 3


@given(
    level=st.integers(0, 63),
    n=st.integers(0, U64 - 1),
    width=st.integers(1, 256),
    entries=st.booleans(),
    slash=st.booleans(),
)
def test_tile_path_round_trip(level: int, n: int, width: int, entries: bool, slash: bool) -> None:
    ref = TileRef(0 if entries else level, n, width, entries)
    path = entries_path(n, width) if entries else tile_path(level, n, width)
    assert path == ref.path
    assert (".p/" in path) == ref.is_partial
    assert parse_tile_path(("/" if slash else "") + path) == ref


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "tile",
        "tile/0",
        "tile/0/",
        "tiles/0/000",
        "//tile/0/000",
        "tile/0/000/",
        "tile//000",
        "tile/00/000",  # leading zero in L
        "tile/01/000",
        "tile/64/000",  # L above 63
        "tile/-1/000",
        "tile/+1/000",
        "tile/x/000",
        "tile/data/000",  # Go's sumdb spelling, not C2SP's
        "tile/8/0/000",  # with a Go height segment
        "tile/0/5",
        "tile/0/05",
        "tile/0/0005",
        "tile/0/x000",
        "tile/0/x001",  # the last element has no x
        "tile/0/001/000",  # the others must have one
        "tile/0/123/456/078",
        "tile/0/x000/005",  # not canonical: leading zero group
        "tile/0/x001/x002/x003",
        "tile/0/X001/000",
        "tile/0/x01/000",
        "tile/0/x0001/000",
        "tile/0/ 005",
        "tile/0/005 ",
        "tile/0/\u0660\u0660\u0665",  # Arabic-Indic digits are not ASCII digits
        "tile/0/005.p",
        "tile/0/005.p/",
        "tile/0/005.p/0",
        "tile/0/005.p/00",
        "tile/0/005.p/05",
        "tile/0/005.p/256",  # a full tile has no .p suffix
        "tile/0/005.p/300",
        "tile/0/005.p/-1",
        "tile/0/005.p/5/",
        "tile/0/005.p/5/6",
        "tile/0/005.q/5",
        "tile/0/005.p.p/5",
        "tile/0/x001.p/000/5",
        "tile/entries",
        "tile/entries/",
        "tile/entries/5",
        "tile/entries/005.p/0",
        "tile/entries/x000/005",
        "tile/0/005?x=1",
        "tile/0/005#frag",
        "tile/0/x018/x446/x744/x073/x709/x551/616",  # 2**64 does not fit
    ],
)
def test_malformed_tile_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput):
        parse_tile_path(path)


@pytest.mark.parametrize("text", ["", "5", "x005", "005/", "/005", "x000/000", "x1000/000"])
def test_malformed_index_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_index(text)


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_index(-1),
        lambda: encode_index(U64),
        lambda: tile_path(64, 0),
        lambda: tile_path(-1, 0),
        lambda: tile_path(0, 0, 0),
        lambda: tile_path(0, 0, 257),
        lambda: entries_path(0, 0),
        lambda: TileRef(1, 0, 256, True),
        lambda: TileRef(0, 0, 0, False),
    ],
)
def test_bad_path_arguments(call: Any) -> None:
    with pytest.raises(InvalidInput):
        call()


# --- tile contents ------------------------------------------------------------------------------


def test_tile_node_ids() -> None:
    assert tile_node_ids(0, 0, 3) == [(0, 0), (0, 1), (0, 2)]
    ids = tile_node_ids(1, 2, 256)
    assert ids[0] == (TILE_HEIGHT, 512)
    assert ids[-1] == (TILE_HEIGHT, 767)
    assert len(ids) == 256
    with pytest.raises(InvalidInput):
        tile_node_ids(0, 0, 0)


def test_partial_width() -> None:
    assert partial_width(0, 0, 300) == 256
    assert partial_width(0, 1, 300) == 44
    assert partial_width(1, 0, 300) == 1
    assert partial_width(0, 0, 256) == 256
    for level, n, size in [
        (0, 1, 256),
        (0, 2, 300),
        (1, 0, 255),
        (2, 0, 65535),
        (3, 0, 2**24 - 1),
        (0, 0, 0),
    ]:
        with pytest.raises(InvalidInput):
            partial_width(level, n, size)
    with pytest.raises(InvalidInput):
        partial_width(0, 0, U64)


@given(st.integers(0, U64 - 1))
def test_tiles_cover_the_tree(size: int) -> None:
    # Per level, the tile widths add up to the number of full subtrees at that tree level.
    # (Large sizes have too many tiles to list; check the arithmetic via partial_width.)
    level = 0
    while count := size >> (TILE_HEIGHT * level):
        last = (count - 1) // TILE_WIDTH
        assert partial_width(level, last, size) == count - last * TILE_WIDTH
        with pytest.raises(InvalidInput):
            partial_width(level, last + 1, size)
        level += 1
    assert level <= 8  # a uint64 size never needs a level-8 tile


def test_tiles_hold_the_stored_merkle_nodes() -> None:
    # Build a real tree; every tile's NodeIds must be stored full nodes, and each level-1
    # hash must be the MTH of the full level-0 tile beneath it (the spec's definition).
    size = 2 * 256 + 70
    nodes: dict[tuple[int, int], bytes] = {}
    cr = CompactRange(0, [])
    for i in range(size):
        nodes.update(cr.append(leaf_hash(i.to_bytes(4, "big"))))
    tiles = tiles_for_size(size)
    assert [(t.level, t.n, t.width) for t in tiles] == [
        (0, 0, 256),
        (0, 1, 256),
        (0, 2, 70),
        (1, 0, 2),
    ]
    for t in tiles:
        assert all(node in nodes for node in tile_node_ids(t.level, t.n, t.width))
    for i, node in enumerate(tile_node_ids(1, 0, 2)):
        below = [nodes[x] for x in tile_node_ids(0, i, 256)]
        assert nodes[node] == root_from_leaf_hashes(below)


# --- entry bundles ------------------------------------------------------------------------


def test_entry_bundle_encoding() -> None:
    assert entry_bundle([b"ab", b"", b"c"]) == b"\x00\x02ab\x00\x00\x00\x01c"
    assert parse_entry_bundle(b"\x00\x02ab\x00\x00\x00\x01c") == [b"ab", b"", b"c"]
    big = b"z" * 0xFFFF
    assert parse_entry_bundle(entry_bundle([big])) == [big]


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=256))
def test_entry_bundle_round_trip(entries: list[bytes]) -> None:
    data = entry_bundle(entries)
    assert len(data) == sum(2 + len(e) for e in entries)
    assert parse_entry_bundle(data) == entries
    assert parse_entry_bundle(data, width=len(entries)) == entries


@pytest.mark.parametrize(
    "data",
    [
        b"",  # empty bundles are never served
        b"\x00",  # truncated length prefix
        b"\x00\x02a",  # truncated entry
        b"\x00\x01a\x00",  # trailing garbage: half a length prefix
        b"\x00\x01a\x00\x05abc",  # second entry too short
        b"\xff\xff" + b"z" * 100,
        b"\x00\x00" * 257,  # 257 entries
    ],
)
def test_malformed_entry_bundles_refused(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_entry_bundle(data)


def test_entry_bundle_width_and_limits() -> None:
    data = entry_bundle([b"a", b"b"])
    with pytest.raises(InvalidInput):
        parse_entry_bundle(data, width=3)
    with pytest.raises(InvalidInput):
        parse_entry_bundle(data, width=0)
    assert parse_entry_bundle(entry_bundle([b""] * 256), width=256) == [b""] * 256
    for bad in ([], [b""] * 257, [b"z" * 0x10000]):
        with pytest.raises(InvalidInput):
            entry_bundle(bad)
