"""Paging, once for every list the HTTP API answers.

Every list route takes ``cursor`` (the key of the last item already read; absent: from the
start) and ``limit`` (1..``MAX_LIMIT``), answers ``next_cursor`` (null on the last page) and,
when there is a next page, an RFC 8288 ``Link: <…>; rel="next"`` header with the same URL
and the next cursor. What a cursor holds depends on the list and is stable under appends
(a log index, a line number, an id), so a page never repeats or skips an item that was
there when the first page was read. ``after`` is the older spelling of ``cursor`` on the
lists that had it (history, audit entries, checkpoints, statement lines) and is still read.

Every answer carries ``Suanli-Log-Size``: the log size of the state it was read from
(``api.http.deps.stamp``; ``deps.reading`` stamps every snapshot read).
"""

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel, Field

from ledger.errors import InvalidInput

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
CURSOR_PATTERN = r"^[A-Za-z0-9\-\./:_]{1,200}$"

T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """Where a page starts (after ``cursor``) and how many items it holds at most."""

    cursor: str | None
    limit: int

    def after_index(self, start: int = -1) -> int:
        """The cursor as a number (a log index, a size, a line), ``start`` if absent."""
        if self.cursor is None:
            return start
        if not self.cursor.lstrip("-").isdigit():
            raise InvalidInput(
                f"query.cursor: {self.cursor!r} is not a number; this list's cursor is the "
                "last index (or line) already read",
                reason="OUT_OF_RANGE",
            )
        value = int(self.cursor)
        if value < start:
            raise InvalidInput(f"query.cursor: {value} is below {start}", reason="OUT_OF_RANGE")
        return value


def _page_request(cursor: str | None, after: str | None, limit: int) -> PageRequest:
    if cursor is not None and after is not None and cursor != after:
        raise InvalidInput("give cursor or after (the same thing), not both", reason="OUT_OF_RANGE")
    return PageRequest(cursor if cursor is not None else after, limit)


def page_query(
    default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT
) -> Callable[..., PageRequest]:
    """A FastAPI dependency reading ``cursor``/``after`` and ``limit`` (1..``maximum``)."""

    def dependency(
        cursor: Annotated[
            str | None,
            Query(
                pattern=CURSOR_PATTERN,
                description="the next_cursor of the page before; absent: the first page",
            ),
        ] = None,
        after: Annotated[
            str | None,
            Query(pattern=CURSOR_PATTERN, description="older spelling of cursor", deprecated=True),
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=maximum, description=f"items on this page, 1..{maximum}")
        ] = default,
    ) -> PageRequest:
        return _page_request(cursor, after, limit)

    return dependency


class PageInfo(BaseModel):
    """What every paged answer says beside its items."""

    next_cursor: str | None = Field(
        default=None, description="pass as cursor= for the next page; null: this is the last"
    )


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def page_of(
    items: Sequence[T],
    key: Callable[[T], Any],
    page: PageRequest,
    parse: Callable[[str], Any] = str,
) -> Page[T]:
    """One page of ``items`` (sorted by ``key``): those with a key above the cursor."""
    start = 0
    if page.cursor is not None:
        start = bisect.bisect_right(items, parse(page.cursor), key=key)
    chosen = list(items[start : start + page.limit])
    more = start + page.limit < len(items)
    return Page(chosen, str(key(chosen[-1])) if more and chosen else None)


def int_cursor(text: str) -> int:
    return PageRequest(text, 1).after_index()


def link_next(request: Request, response: Response, next_cursor: str | None) -> None:
    """The RFC 8288 ``Link: <…>; rel="next"`` header, when there is a next page."""
    if next_cursor is not None:
        params = {k: v for k, v in request.query_params.items() if k not in ("after", "cursor")}
        url = request.url.remove_query_params(list(request.query_params.keys()))
        url = url.include_query_params(**params, cursor=next_cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'


Paging = Annotated[PageRequest, Depends(page_query())]
"""The usual page parameters: ``cursor`` (or ``after``) and ``limit`` (default 100, at most
1000)."""
