"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles): tile coordinates, paths and entry bundles.

Pure arithmetic and parsing, no I/O. What the spec fixes, and this module follows:

* Tiles are 8 tree levels high and 256 hashes wide. The n-th tile at tile level ``l`` holds
  ``MTH(D[(n*256 + i) * 256**l : (n*256 + i + 1) * 256**l])`` for ``i`` in 0..255, i.e. the
  RFC 9162 full-subtree hashes at tree level ``8*l``, indices ``n*256 .. n*256 + 255`` --
  exactly the ``(8*l, index)`` NodeIds that ``ledger.merkle`` stores.
* The rightmost tile of a level may be partial: for a tree of size ``s`` it holds
  ``floor(s / 256**l) mod 256`` hashes, is served as ``<N>.p/<W>``, and a width of 0 means
  the tile does not exist ("Empty tiles MUST NOT be served").
* ``<L>`` is a decimal integer 0..63 without leading zeros; ``<W>`` is 1..255 without
  leading zeros; ``<N>`` is zero-padded 3-digit elements, all but the last prefixed ``x``
  (1234067 -> ``x001/x234/067``). Parsing is strict and canonical: a path parses only if
  encoding the result gives the same path back (so ``x000/005`` and ``005.p/256`` are
  refused), which keeps one URL per resource for caches.
* Entry bundles (``tile/entries/<N>[.p/<W>]``) are the level-0 entries as big-endian uint16
  length-prefixed byte strings, so an entry is at most 65535 bytes and a bundle holds 1..256.

Unlike Go's sumdb ``tlog`` paths (``tile/H/L/N``), C2SP drops the height segment (always 8)
and names entry bundles ``tile/entries/N`` instead of ``tile/H/data/N``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import InvalidInput

__all__ = [
    "MAX_ENTRY_SIZE",
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileRef",
    "encode_index",
    "entries_path",
    "entry_bundle",
    "parse_entry_bundle",
    "parse_index",
    "parse_tile_path",
    "partial_width",
    "tile_node_ids",
    "tile_path",
    "tiles_for_size",
]

TILE_HEIGHT = 8
TILE_WIDTH = 256  # 2**TILE_HEIGHT
MAX_TILE_LEVEL = 63  # the spec's bound on <L>
MAX_ENTRY_SIZE = 0xFFFF  # a uint16 length prefix
_U64_LIMIT = 1 << 64

# ASCII digits only: str.isdigit() and \d would also accept other scripts' digits.
_ELEMENT = re.compile(r"x[0-9]{3}", re.ASCII)
_LAST = re.compile(r"[0-9]{3}", re.ASCII)
_LEVEL = re.compile(r"0|[1-9][0-9]?", re.ASCII)
_WIDTH = re.compile(r"[1-9][0-9]{0,2}", re.ASCII)


def _check_int(value: object, what: str, lo: int, hi: int) -> int:
    """Check lo <= value < hi for a real int (not bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, got {type(value).__name__}")
    if not lo <= value < hi:
        raise InvalidInput(f"{what} must be in [{lo}, {hi}), got {value}", details={what: value})
    return value


def _check_level(level: int) -> int:
    return _check_int(level, "level", 0, MAX_TILE_LEVEL + 1)


def _check_width(width: int | None) -> int:
    if width is None:
        return TILE_WIDTH
    return _check_int(width, "width", 1, TILE_WIDTH + 1)


# --- paths --------------------------------------------------------------------------------


def encode_index(n: int) -> str:
    """The ``<N>`` path segment: 1234067 -> "x001/x234/067", 5 -> "005"."""
    _check_int(n, "tile index", 0, _U64_LIMIT)
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def parse_index(path: str) -> int:
    """Inverse of ``encode_index``; refuses anything ``encode_index`` would not produce."""
    if not isinstance(path, str):
        raise InvalidInput(f"tile index path must be a string, got {type(path).__name__}")
    elements = path.split("/")
    if not _LAST.fullmatch(elements[-1]) or not all(_ELEMENT.fullmatch(e) for e in elements[:-1]):
        raise InvalidInput(
            f"tile index {path!r} is not 3-digit elements with all but the last prefixed 'x'",
            details={"path": path},
        )
    n = 0
    for e in elements:
        n = n * 1000 + int(e.lstrip("x"))
    # Canonical form only: no leading x000 elements, so each index has exactly one path.
    if n >= _U64_LIMIT or encode_index(n) != path:
        raise InvalidInput(f"tile index {path!r} is not in canonical form", details={"path": path})
    return n


def _suffix(width: int) -> str:
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, n: int, width: int | None = None) -> str:
    """``tile/<L>/<N>[.p/<W>]``; width None or 256 is a full tile."""
    _check_level(level)
    w = _check_width(width)
    return f"tile/{level}/{encode_index(n)}{_suffix(w)}"


def entries_path(n: int, width: int | None = None) -> str:
    """``tile/entries/<N>[.p/<W>]``; width None or 256 is a full bundle."""
    w = _check_width(width)
    return f"tile/entries/{encode_index(n)}{_suffix(w)}"


@dataclass(frozen=True)
class TileRef:
    """One tile (or entry bundle) resource.

    level: the tile level L (0 for entry bundles, which mirror the level-0 tiles).
    n: the tile's index within its level.
    width: how many hashes (or entries) it holds; 256 for a full tile.
    is_entries: True for ``tile/entries/...`` bundles, False for hash tiles.
    """

    level: int
    n: int
    width: int
    is_entries: bool

    def __post_init__(self) -> None:
        _check_level(self.level)
        _check_int(self.n, "tile index", 0, _U64_LIMIT)
        _check_width(self.width)
        if self.is_entries and self.level != 0:
            raise InvalidInput("entry bundles are level 0", details={"level": self.level})

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        if self.is_entries:
            return entries_path(self.n, self.width)
        return tile_path(self.level, self.n, self.width)


def parse_tile_path(path: str) -> TileRef:
    """Parse ``[/]tile/<L>/<N>[.p/<W>]`` or ``[/]tile/entries/<N>[.p/<W>]``, strictly."""
    if not isinstance(path, str):
        raise InvalidInput(f"tile path must be a string, got {type(path).__name__}")
    bad = InvalidInput(f"not a tlog-tiles path: {path!r}", details={"path": path})
    rest = path.removeprefix("/")
    parts = rest.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise bad
    kind, index_parts = parts[1], parts[2:]
    width = TILE_WIDTH
    if len(index_parts) >= 2 and index_parts[-2].endswith(".p"):
        if not _WIDTH.fullmatch(index_parts[-1]):
            raise bad
        width = int(index_parts[-1])
        if width >= TILE_WIDTH:
            raise bad
        index_parts = [*index_parts[:-2], index_parts[-2].removesuffix(".p")]
    try:
        n = parse_index("/".join(index_parts))
    except InvalidInput:
        raise bad from None
    if kind == "entries":
        return TileRef(level=0, n=n, width=width, is_entries=True)
    if not _LEVEL.fullmatch(kind) or int(kind) > MAX_TILE_LEVEL:
        raise bad
    return TileRef(level=int(kind), n=n, width=width, is_entries=False)


# --- which tiles exist ----------------------------------------------------------------------


def _hashes_at_level(level: int, size: int) -> int:
    """How many full-subtree hashes at tree level 8*level a tree of `size` leaves has."""
    return size >> (TILE_HEIGHT * level)


def partial_width(level: int, n: int, size: int) -> int:
    """Width of tile (level, n) in a tree of `size` leaves: 256 when full, else
    ``floor(size / 256**level) mod 256``. Raises InvalidInput if the tile does not exist."""
    _check_level(level)
    _check_int(n, "tile index", 0, _U64_LIMIT)
    _check_int(size, "size", 0, _U64_LIMIT)
    count = _hashes_at_level(level, size)
    full, rem = divmod(count, TILE_WIDTH)
    if n < full:
        return TILE_WIDTH
    if n == full and rem:
        return rem
    raise InvalidInput(
        f"tile {level}/{n} does not exist in a tree of size {size}",
        details={"level": level, "n": n, "size": size},
    )


def tiles_for_size(size: int) -> list[TileRef]:
    """Every hash tile of a tree of `size` leaves, by level then index, the partial ones with
    their width. (The entry bundles are the level-0 list with ``is_entries=True``.)"""
    _check_int(size, "size", 0, _U64_LIMIT)
    out: list[TileRef] = []
    level = 0
    while count := _hashes_at_level(level, size):
        full, rem = divmod(count, TILE_WIDTH)
        out.extend(TileRef(level, n, TILE_WIDTH, is_entries=False) for n in range(full))
        if rem:
            out.append(TileRef(level, full, rem, is_entries=False))
        level += 1
    return out


def tile_node_ids(level: int, n: int, width: int) -> list[tuple[int, int]]:
    """The Merkle NodeIds (tree level 8*level, index) whose hashes tile (level, n) holds,
    in order."""
    _check_level(level)
    _check_int(n, "tile index", 0, _U64_LIMIT)
    w = _check_width(width)
    first = n * TILE_WIDTH
    return [(TILE_HEIGHT * level, first + i) for i in range(w)]


# --- entry bundles ----------------------------------------------------------------------------


def entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Serialise 1..256 entries, each as a big-endian uint16 length then its bytes."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise InvalidInput(
            f"an entry bundle holds 1 to {TILE_WIDTH} entries, got {len(entries)}",
            details={"count": len(entries)},
        )
    out = bytearray()
    for i, e in enumerate(entries):
        if not isinstance(e, bytes):
            raise InvalidInput(f"entry {i} must be bytes, got {type(e).__name__}")
        if len(e) > MAX_ENTRY_SIZE:
            raise InvalidInput(
                f"entry {i} is {len(e)} bytes; a bundle entry is at most {MAX_ENTRY_SIZE}",
                details={"entry": i, "length": len(e)},
            )
        out += len(e).to_bytes(2, "big")
        out += e
    return bytes(out)


def parse_entry_bundle(data: bytes, *, width: int | None = None) -> list[bytes]:
    """Split an entry bundle; refuse truncation, an empty bundle, more than 256 entries, and
    (when `width` is given) any count other than `width`."""
    if not isinstance(data, bytes):
        raise InvalidInput(f"entry bundle must be bytes, got {type(data).__name__}")
    want = None if width is None else _check_width(width)
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(entries) == TILE_WIDTH:
            raise InvalidInput(f"entry bundle holds more than {TILE_WIDTH} entries")
        if pos + 2 > len(data):
            raise InvalidInput(
                f"entry bundle truncated in the length prefix at byte {pos}",
                details={"offset": pos},
            )
        length = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + length > len(data):
            raise InvalidInput(
                f"entry {len(entries)} claims {length} bytes, only {len(data) - pos} remain",
                details={"entry": len(entries), "offset": pos},
            )
        entries.append(data[pos : pos + length])
        pos += length
    if not entries:
        raise InvalidInput("entry bundle is empty")
    if want is not None and len(entries) != want:
        raise InvalidInput(
            f"entry bundle holds {len(entries)} entries, expected {want}",
            details={"got": len(entries), "want": want},
        )
    return entries
