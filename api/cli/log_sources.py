"""Where an audit reads a log from: a server, an export directory, or the database itself.

Every source is read the way any C2SP tlog-tiles client reads a log: the latest
``checkpoint``, then ``tile/entries/<N>[.p/<W>]`` entry bundles and ``tile/<L>/<N>[.p/<W>]``
hash tiles, with paths from ``ledger.tiles``. Two extras that are not in the tiles spec,
``checkpoints.jsonl`` (every stored signed checkpoint, for naming a bad index) and ``key``
(the log's verifier key), come from ``/v1/log/checkpoints`` and ``/v1/log/key`` on a
server and are files of the same names in an export.

* ``HttpSource``: ``http(s)://host:port`` of a running service (httpx; bundles are fetched a
  few at a time in threads, so reading overlaps verifying).
* ``DirSource``: a directory written by ``suanli audit export``.
* ``JsonlSource``: the web page's download (``GET /v1/audit/log.jsonl``): one
  ``{"index": i, "data": base64}`` line per entry, checked against a signed checkpoint
  given beside it (or a ``{"checkpoint": note}`` line in the file).
* ``DbSource``: a database URL (``sqlite:///…``, ``postgresql+psycopg://…``), read through
  the store's tables, serving the same paths as the HTTP routes would. Read only: it never
  migrates or writes.

Nothing here decides whether the log is right; ``ledger.audit`` does. A source reports
what it could not read as ``Missing`` items (a bundle that is not served, or holds fewer
entries than its width) and raises ``SourceError`` only when it cannot work at all (no
server, not an export directory).
"""

from __future__ import annotations

import base64
import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx

from api.errors import ToolError
from ledger import merkle, tiles
from ledger.audit import EntryItem, Evidence, Missing
from ledger.checkpoint import Checkpoint, parse_checkpoint
from ledger.errors import LedgerError
from ledger.note import parse_note
from ledger.snapshot import SnapshotHeader
from ledger.tlogpolicy import Policy

CHECKPOINT_FILE = "checkpoint"
CHECKPOINTS_FILE = "checkpoints.jsonl"
KEY_FILE = "key"
PROJECTION_FILE = "projection.json"
DISCLOSURES_FILE = "disclosures.jsonl"  # only in an export made with them (restricted!)
_PAGE = 1000


class SourceError(ToolError):
    """The source cannot be read at all (unreachable, not an export, HTTP error)."""


def peek_checkpoint(note: str) -> Checkpoint:
    """The checkpoint text of a note, NOT verified: for sizes only (``SourceError`` if bad)."""
    try:
        return parse_checkpoint(parse_note(note).text)
    except LedgerError as exc:
        raise SourceError(f"malformed checkpoint: {exc.message}") from exc


class Source:
    """A log read through tlog-tiles paths. Subclasses provide the four primitives."""

    name = "source"
    witness_policy: Policy | None = None
    """The verifier's witnesses: a database source then reads the newest checkpoint they
    have cosigned to its quorum (a server or an export serves the one it chose)."""

    def checkpoint(self) -> str:
        """The latest signed checkpoint note, with its cosignatures."""
        raise NotImplementedError

    def get(self, path: str) -> bytes | None:
        """The resource at a tiles path (``tile/...``); ``None`` if it is not there."""
        raise NotImplementedError

    def checkpoints(self, after: int = 0) -> Iterator[tuple[int, str]]:
        """Stored signed checkpoints with size > ``after``, smallest first."""
        raise NotImplementedError

    def log_vkey(self) -> str | None:
        """The log's current verifier key string, if the source says."""
        raise NotImplementedError

    def projection(self) -> tuple[int, dict[str, int]] | None:
        """The service's stored projection (size, summary), if the source has one."""
        return None

    def disclosures(self) -> Callable[[int, int], Mapping[int, tuple[str, ...]]] | None:
        """How to read the disclosures of entries [start, end), if the source may give
        them (a full audit); None for a public one."""
        return None

    def snapshots(self) -> list[SnapshotHeader]:
        """The headers of the service's fold snapshots, if the source has them."""
        return []

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    _latest: int | None = None

    def latest_size(self) -> int:
        if self._latest is None:
            self._latest = peek_checkpoint(self.checkpoint()).size
        return self._latest

    def _widths(self, level: int, n: int, width: int) -> list[int]:
        """Widths to try for a tile of which the first ``width`` items are wanted: exactly
        that, then the full tile, then the tile as wide as the latest tree has it (an
        export holds only the tiles of its own size; their prefixes are the older tiles)."""
        widths = [width, tiles.TILE_WIDTH]
        with suppress(LedgerError, SourceError):
            widths.append(tiles.partial_width(level, n, self.latest_size()))
        return [w for i, w in enumerate(widths) if w >= width and w not in widths[:i]]

    def hash_tile(self, level: int, n: int, width: int) -> list[bytes] | None:
        """The first ``width`` hashes of hash tile (level, n), or ``None``."""
        for w in self._widths(level, n, width):
            data = self.get(tiles.tile_path(level, n, w))
            if data is not None and len(data) == w * merkle.HASH_SIZE:
                return _split(data)[:width]
        return None

    def bundle(self, n: int, width: int) -> bytes | None:
        """Entry bundle n as served at ``width``; if that is not served, the first
        ``width`` entries of a wider bundle."""
        exact = self.get(_entries_path(n, width))
        if exact is not None:
            return exact
        for w in self._widths(0, n, width)[1:]:
            data = self.get(_entries_path(n, w))
            if data is None:
                continue
            try:
                return tiles.entry_bundle(tiles.parse_entry_bundle(data)[:width])
            except LedgerError:
                return data
        return None

    # --- built on the primitives --------------------------------------------------------------

    def entries(self, size: int, prefetch: int = 8) -> Iterator[EntryItem]:
        """Entries [0, size) from the entry bundles, ``Missing`` where a bundle falls short."""
        refs = [(n, min(tiles.TILE_WIDTH, size - n * tiles.TILE_WIDTH)) for n in _tiles(size)]
        with ThreadPoolExecutor(max_workers=max(1, prefetch)) as pool:
            window: deque[tuple[int, int, Future[bytes | None]]] = deque()
            pending = iter(refs)
            for n, width in pending:
                window.append((n, width, pool.submit(self.bundle, n, width)))
                if len(window) >= prefetch:
                    break
            while window:
                n, width, future = window.popleft()
                following = next(pending, None)
                if following is not None:
                    window.append((*following, pool.submit(self.bundle, *following)))
                yield from _bundle_items(n, width, future.result())

    def entry(self, index: int, size: int) -> bytes:
        """Entry ``index`` of the tree of ``size``, from its entry bundle."""
        n = index // tiles.TILE_WIDTH
        width = min(tiles.TILE_WIDTH, size - n * tiles.TILE_WIDTH)
        for item in _bundle_items(n, width, self.bundle(n, width)):
            if isinstance(item, Missing):
                if item.index == index:
                    raise SourceError(f"entry {index}: {item.why}")
            elif item[0] == index:
                return item[1]
        raise SourceError(f"entry {index} is not in the tree of size {size}")

    def leaf_hashes(self, size: int) -> Callable[[int, int], Sequence[bytes] | None]:
        """A reader of the stored leaf hashes [start, end) of the tree of ``size`` (level-0
        hash tiles); it returns ``None`` if a tile is missing or malformed."""

        def read(start: int, end: int) -> Sequence[bytes] | None:
            end = min(end, size)
            out: list[bytes] = []
            first = start // tiles.TILE_WIDTH
            for n in range(first, _ceil_div(end, tiles.TILE_WIDTH)):
                width = min(tiles.TILE_WIDTH, size - n * tiles.TILE_WIDTH)
                hashes = self.hash_tile(0, n, width)
                if hashes is None:
                    return None
                out.extend(hashes)
            offset = start - first * tiles.TILE_WIDTH
            return out[offset : offset + end - start]

        return read

    def evidence(self, size: int) -> Evidence:
        def stored() -> Iterator[tuple[int, str]]:
            for cp_size, note in self.checkpoints():
                if cp_size > size:
                    return
                yield cp_size, note

        return Evidence(checkpoints=stored, leaf_hashes=self.leaf_hashes(size))

    def node_reader(self, size: int) -> merkle.NodeReader:
        """A ``merkle.NodeReader`` for the tree of ``size`` built from its hash tiles.

        A tile at tile level L holds the full-subtree hashes at tree level 8L; a node at
        level 8L + h (h < 8) is the subtree over 2**h consecutive hashes of one such tile,
        recomputed here.
        """
        cache: dict[tuple[int, int], list[bytes]] = {}

        def tile(level: int, n: int) -> list[bytes]:
            if (level, n) not in cache:
                width = tiles.partial_width(level, n, size)
                hashes = self.hash_tile(level, n, width)
                if hashes is None:
                    raise SourceError(f"hash tile {tiles.tile_path(level, n, width)} is missing")
                cache[(level, n)] = hashes
            return cache[(level, n)]

        def read(ids: Sequence[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
            out: dict[merkle.NodeId, bytes] = {}
            for level, index in ids:
                tile_level, height = divmod(level, tiles.TILE_HEIGHT)
                first = index << height
                n, offset = divmod(first, tiles.TILE_WIDTH)
                hashes = tile(tile_level, n)[offset : offset + (1 << height)]
                if len(hashes) != 1 << height:
                    raise SourceError(f"node {(level, index)} is not in the tree of size {size}")
                out[(level, index)] = merkle.root_from_leaf_hashes(hashes)
            return out

        return read

    def checkpoint_at(self, size: int) -> str | None:
        """The stored signed checkpoint of exactly ``size``, if there is one."""
        latest = self.checkpoint()
        if self.latest_size() == size:
            return latest
        for cp_size, note in self.checkpoints(after=max(0, size - 1)):
            return note if cp_size == size else None
        return None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _tiles(size: int) -> range:
    return range(_ceil_div(size, tiles.TILE_WIDTH))


def _entries_path(n: int, width: int) -> str:
    return tiles.entries_path(n, None if width == tiles.TILE_WIDTH else width)


def _split(data: bytes) -> list[bytes]:
    size = merkle.HASH_SIZE
    return [data[i : i + size] for i in range(0, len(data), size)]


def _bundle_items(n: int, width: int, data: bytes | None) -> Iterator[EntryItem]:
    start = n * tiles.TILE_WIDTH
    path = _entries_path(n, width)
    if data is None:
        for i in range(start, start + width):
            yield Missing(i, f"entry bundle {path} is not available")
        return
    try:
        got = tiles.parse_entry_bundle(data)
    except LedgerError as exc:
        got, why = [], f"entry bundle {path} is malformed: {exc.message}"
    else:
        why = f"entry bundle {path} holds {len(got)} entries, not {width}"
        if len(got) > width:
            got = []
    for i, data_i in enumerate(got):
        yield start + i, data_i
    for i in range(start + len(got), start + width):
        yield Missing(i, why)


# --- a running service --------------------------------------------------------------------


class HttpSource(Source):
    def __init__(
        self, url: str, client: httpx.Client | None = None, token: str | None = None
    ) -> None:
        self.name = url.rstrip("/")
        self.client = client or httpx.Client(base_url=self.name, timeout=60.0)
        self.token = token

    def _get(self, path: str, **params: Any) -> httpx.Response | None:
        try:
            response = self.client.get("/" + path.lstrip("/"), params=params or None)
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot read {self.name}/{path}: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise SourceError(f"GET {self.name}/{path}: HTTP {response.status_code}")
        return response

    def checkpoint(self) -> str:
        response = self._get(CHECKPOINT_FILE)
        if response is None:
            raise SourceError(f"{self.name} serves no /checkpoint: is it a suanli log?")
        return response.text

    def get(self, path: str) -> bytes | None:
        response = self._get(path)
        return None if response is None else response.content

    def checkpoints(self, after: int = 0) -> Iterator[tuple[int, str]]:
        while True:
            response = self._get("v1/log/checkpoints", after=after, limit=_PAGE)
            rows = [] if response is None else response.json()["checkpoints"]
            if not rows:
                return
            for row in rows:
                yield int(row["size"]), str(row["note"])
            after = int(rows[-1]["size"])

    def log_vkey(self) -> str | None:
        response = self._get("v1/log/key")
        return None if response is None else str(response.json()["vkey"])

    def projection(self) -> tuple[int, dict[str, int]] | None:
        response = self._get("v1/log/projection")
        if response is None:
            return None
        body = response.json()
        return int(body["size"]), {str(k): int(v) for k, v in body["values"].items()}

    def disclosures(self) -> Callable[[int, int], Mapping[int, tuple[str, ...]]] | None:
        """With an auditor's token: ``GET /v1/log/disclosures`` (docs/publication.md)."""
        if self.token is None:
            return None
        headers = {"Authorization": f"Bearer {self.token}"}

        def read(start: int, end: int) -> Mapping[int, tuple[str, ...]]:
            try:
                response = self.client.get(
                    "/v1/log/disclosures", params={"start": start, "end": end}, headers=headers
                )
            except httpx.HTTPError as exc:
                raise SourceError(f"cannot read {self.name}/v1/log/disclosures: {exc}") from exc
            if response.status_code != 200:
                raise SourceError(
                    f"GET {self.name}/v1/log/disclosures: HTTP {response.status_code} "
                    f"({response.text[:200]}); --token must be an auditor's or the bureau's"
                )
            return {int(i): tuple(d) for i, d in response.json()["disclosures"].items()}

        return read

    def close(self) -> None:
        self.client.close()


# --- an export directory ------------------------------------------------------------------


class DirSource(Source):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        if not (path / CHECKPOINT_FILE).is_file():
            raise SourceError(f"{path} is not an export directory (no {CHECKPOINT_FILE} file)")

    def checkpoint(self) -> str:
        return (self.path / CHECKPOINT_FILE).read_text("utf-8")

    def get(self, path: str) -> bytes | None:
        file = self.path / path
        # Paths come from ledger.tiles (no "..", no absolute paths); refuse anything else.
        if ".." in Path(path).parts or Path(path).is_absolute():
            return None
        return file.read_bytes() if file.is_file() else None

    def checkpoints(self, after: int = 0) -> Iterator[tuple[int, str]]:
        file = self.path / CHECKPOINTS_FILE
        if not file.is_file():
            return
        with file.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                row = json.loads(line)
                if int(row["size"]) > after:
                    yield int(row["size"]), str(row["note"])

    def log_vkey(self) -> str | None:
        file = self.path / KEY_FILE
        return file.read_text("utf-8").strip() if file.is_file() else None

    def projection(self) -> tuple[int, dict[str, int]] | None:
        file = self.path / PROJECTION_FILE
        if not file.is_file():
            return None
        body = json.loads(file.read_text("utf-8"))
        return int(body["size"]), {str(k): int(v) for k, v in body["values"].items()}

    def disclosures(self) -> Callable[[int, int], Mapping[int, tuple[str, ...]]] | None:
        """An export made with the disclosures holds them (one JSON line per entry)."""
        file = self.path / DISCLOSURES_FILE
        if not file.is_file():
            return None
        found: dict[int, tuple[str, ...]] = {}
        with file.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    row = json.loads(line)
                    found[int(row["index"])] = tuple(row["disclosures"])

        def read(start: int, end: int) -> Mapping[int, tuple[str, ...]]:
            return {i: d for i, d in found.items() if start <= i < end}

        return read


# --- the database -------------------------------------------------------------------------


class DbSource(Source):
    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        from ledger.store.db import make_engine
        from ledger.store.log import LogStore

        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if not database or not Path(database).is_file():
                raise SourceError(f"no SQLite database at {database!r}")
        self.name = parsed.render_as_string(hide_password=True)
        self.store = LogStore(make_engine(url))

    def checkpoint(self) -> str:
        try:
            latest = self.store.served_checkpoint(self.witness_policy)
        except Exception as exc:  # SQLAlchemy errors: no such table, cannot connect
            raise SourceError(f"cannot read the log in {self.name}: {exc}") from exc
        if latest is None:
            raise SourceError(f"the log in {self.name} has no checkpoint")
        return latest[1]

    def _rows(self, start: int, end: int) -> list[tuple[int, bytes]]:
        from sqlalchemy import select

        from ledger.store.schema import log_entries

        query = (
            select(log_entries.c.idx, log_entries.c.data)
            .where(log_entries.c.idx >= start, log_entries.c.idx < end)
            .order_by(log_entries.c.idx)
        )
        with self.store.engine.connect() as conn:
            return [(int(i), bytes(d)) for i, d in conn.execute(query)]

    def get(self, path: str) -> bytes | None:
        ref = tiles.parse_tile_path(path)
        start = ref.n * tiles.TILE_WIDTH
        if ref.is_entries:
            rows = self._rows(start, start + ref.width)
            return tiles.entry_bundle([d for _, d in rows]) if rows else None
        level = ref.level * tiles.TILE_HEIGHT
        hashes = self.store.node_range(level, start, start + ref.width)
        return b"".join(hashes) if hashes else None

    def entries(self, size: int, prefetch: int = 8) -> Iterator[EntryItem]:
        """Rows by their own index, so a deleted row is named exactly."""
        del prefetch
        batch = 5000
        for start in range(0, size, batch):
            expected = start
            for index, data in self._rows(start, min(size, start + batch)):
                while expected < index:
                    yield Missing(expected, "no row with this index in log_entries")
                    expected += 1
                yield index, data
                expected += 1
            for missing in range(expected, min(size, start + batch)):
                yield Missing(missing, "no row with this index in log_entries")

    def projection(self) -> tuple[int, dict[str, int]] | None:
        from ledger.store.log import load_projection

        return load_projection(self.store.engine)

    def disclosures(self) -> Callable[[int, int], Mapping[int, tuple[str, ...]]] | None:
        """The database holds them beside the log: whoever reads it audits in full."""
        return self.store.disclosures

    def snapshots(self) -> list[SnapshotHeader]:
        from ledger.store.snapshots import headers

        return headers(self.store.engine)

    def checkpoints(self, after: int = 0) -> Iterator[tuple[int, str]]:
        while rows := self.store.checkpoints(after=after, limit=_PAGE):
            yield from rows
            after = rows[-1][0]

    def log_vkey(self) -> str | None:
        """The log key named by the last ``log.genesis``/``log.rotate`` entry."""
        vkey = None
        for _index, data in self.store.iter_entries(0):
            if b'"kind":"log.genesis"' in data or b'"kind":"log.rotate"' in data:
                body = json.loads(data).get("body", {})
                vkey = body.get("log_key") or body.get("new_key") or vkey
        return vkey

    def close(self) -> None:
        self.store.engine.dispose()


class JsonlSource(Source):
    """The log as JSON Lines (``GET /v1/audit/log.jsonl``), read as a stream: entries only,
    so the signed checkpoint comes from ``checkpoint_note`` (a file saved with the
    download) or from a ``{"checkpoint": "<note>"}`` line in the file."""

    def __init__(self, path: Path, checkpoint_note: str | None = None) -> None:
        self.path = path
        self.name = str(path)
        self._note = checkpoint_note

    def _lines(self) -> Iterator[tuple[int, dict[str, Any] | None]]:
        """(line number, object) per non-blank line; None for a line that is not JSON."""
        try:
            with self.path.open("rb") as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        try:
                            found = json.loads(line)
                        except ValueError:
                            found = None
                        yield number, found if isinstance(found, dict) else None
        except OSError as exc:
            raise SourceError(f"cannot read {self.path}: {exc.strerror or exc}") from exc

    def checkpoint(self) -> str:
        if self._note is None:
            for _, item in self._lines():
                if item is not None and isinstance(item.get("checkpoint"), str):
                    self._note = item["checkpoint"]
                    break
            else:
                raise SourceError(
                    f"{self.path} holds entries but no signed checkpoint",
                    hint="give --checkpoint FILE: the checkpoint saved with the download "
                    "(GET /checkpoint, or /v1/log/checkpoints for its size)",
                )
        return self._note

    def entries(self, size: int, prefetch: int = 8) -> Iterator[EntryItem]:
        """Entries [0, size) in file order; ``Missing`` for a gap, a bad line or a short
        file (the index a line claims is checked against its position)."""
        del prefetch
        expected = 0
        for number, item in self._lines():
            if expected >= size:
                return
            if item is not None and "checkpoint" in item and "index" not in item:
                continue
            index = item.get("index") if item is not None else None
            if item is None or not isinstance(index, int) or index < expected:
                yield Missing(expected, f"line {number} is not an entry line after {expected}")
                expected += 1
                continue
            while expected < min(index, size):
                yield Missing(expected, f"no line for entry {expected}")
                expected += 1
            if index >= size:
                return
            try:
                data = base64.b64decode(str(item.get("data")), validate=True)
            except ValueError:
                yield Missing(index, f"line {number}: data is not base64")
            else:
                yield index, data
            expected = index + 1
        for missing in range(expected, size):
            yield Missing(missing, f"the file ends before entry {missing}")

    def get(self, path: str) -> bytes | None:
        return None  # no tiles: the audit rebuilds the tree from the entries

    def checkpoints(self, after: int = 0) -> Iterator[tuple[int, str]]:
        note = self.checkpoint()
        if peek_checkpoint(note).size > after:
            yield peek_checkpoint(note).size, note

    def log_vkey(self) -> str | None:
        return None

    def evidence(self, size: int) -> Evidence:
        return Evidence(self.checkpoints, None)


def is_jsonl(path: Path) -> bool:
    """Whether ``path`` is a JSON Lines file (by name, or by its first line)."""
    if not path.is_file():
        return False
    if path.suffix in (".jsonl", ".ndjson"):
        return True
    with path.open("rb") as file:
        return file.readline().lstrip().startswith(b"{")


def open_source(spec: str, token: str | None = None, checkpoint_note: str | None = None) -> Source:
    """A source from a command-line argument: URL, database URL, export directory or the
    web page's JSONL download (checked against ``checkpoint_note`` if given); an HTTP
    source with an auditor's ``token`` also gives the disclosures (a full audit)."""
    if spec.startswith(("http://", "https://")):
        return HttpSource(spec, token=token)
    if spec.startswith(("sqlite:", "postgresql:", "postgresql+")):
        return DbSource(spec)
    path = Path(spec)
    if is_jsonl(path):
        return JsonlSource(path, checkpoint_note)
    if not path.is_dir():
        raise SourceError(
            f"{spec!r} is not an http(s):// URL, a database URL, an export directory "
            "or a JSONL download",
            hint="e.g. --source http://127.0.0.1:8080",
        )
    return DirSource(path)


# --- export -------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def export(
    source: Source,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    disclosures: bool = True,
) -> int:
    """Mirror the log at its latest checkpoint into ``out``; return the size exported.

    Writes every hash tile and entry bundle of that tree (full and partial) at its C2SP
    path, ``checkpoints.jsonl`` (every stored checkpoint up to that size), ``key`` and, last,
    ``checkpoint``, so that a directory without a ``checkpoint`` file is an unfinished one.
    Raises ``SourceError`` if a tile or bundle the checkpoint implies is not served.
    """
    note = source.checkpoint()
    size = peek_checkpoint(note).size
    refs = tiles.tiles_for_size(size)
    bundles = [tiles.TileRef(0, r.n, r.width, is_entries=True) for r in refs if r.level == 0]
    todo = [*refs, *bundles]
    out.mkdir(parents=True, exist_ok=True)
    for done, ref in enumerate(todo, 1):
        data = source.get(ref.path)
        if data is None:
            raise SourceError(f"{source.name} does not serve {ref.path}")
        _write(out / ref.path, data)
        if progress is not None:
            progress(done, len(todo))
    tmp = out / (CHECKPOINTS_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as lines:
        for cp_size, cp_note in source.checkpoints():
            if cp_size > size:
                break
            lines.write(json.dumps({"size": cp_size, "note": cp_note}, ensure_ascii=False) + "\n")
    tmp.replace(out / CHECKPOINTS_FILE)
    vkey = source.log_vkey()
    if vkey:
        _write(out / KEY_FILE, (vkey + "\n").encode())
    stored = source.projection()
    if stored is not None and stored[0] <= size:
        body = {"size": stored[0], "values": stored[1]}
        _write(out / PROJECTION_FILE, json.dumps(body, sort_keys=True).encode())
    if disclosures:
        _export_disclosures(source, out, size)
    _write(out / CHECKPOINT_FILE, note.encode("utf-8"))
    return size


def _export_disclosures(source: Source, out: Path, size: int, batch: int = 5000) -> None:
    """With a source that gives them, the disclosures too (the export is then restricted:
    it opens what the log conceals; it is written 0600)."""
    read = source.disclosures()
    if read is None:
        return
    tmp = out / (DISCLOSURES_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as lines:
        tmp.chmod(0o600)
        for start in range(0, size, batch):
            for index, found in sorted(read(start, min(size, start + batch)).items()):
                lines.write(json.dumps({"index": index, "disclosures": list(found)}) + "\n")
    tmp.replace(out / DISCLOSURES_FILE)
