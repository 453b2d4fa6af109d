"""
What an export costs before it runs: how many pages a listing holds, and what they take of the budget.

A listing's page count comes from one of two sources, best first:

1. the ``Link`` header. A page without ``rel="next"`` is the last; a ``rel="last"`` equal to the next
   page makes two. Otherwise the one query parameter in which the next and the last URL differ is
   read as a position (a page number or an offset, plainly or inside an opaque URL-safe base64
   cursor holding one number); it must step evenly from this page through the next to the last.
   Only read, never used to build a URL.
2. the time reach. Event pages come newest first, so the share of the window's time that the pages
   read so far span, back to their oldest record, is the share of the pages read.

The later 60-day chunks of a pixel are taken to be as dense as the one being read.

Pure: no I/O, no Airflow, no HTTP client.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

from airflow_provider_prisjakt.api.ratelimit import DEFAULT_WINDOW_SECONDS
from airflow_provider_prisjakt.api.record_times import record_time, time_span
from airflow_provider_prisjakt.api.windows import summary_requests

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.ratelimit import RateLimitStatus
    from airflow_provider_prisjakt.api.windows import RequestChunk

#: Requests per rate-limit window when the server has not said (the API's documented 10,000 an hour).
DOCUMENTED_LIMIT = 10_000
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+=*")
_NUMBER = re.compile(r"[0-9]+")


class PageLike(Protocol):
    """What the estimate reads of a page (:class:`~airflow_provider_prisjakt.client.transport.Page`)."""

    @property
    def records(self) -> list[Any]: ...
    @property
    def url(self) -> str: ...
    @property
    def next_url(self) -> str | None: ...
    @property
    def last_url(self) -> str | None: ...
    @property
    def number(self) -> int: ...


def paging_position(value: str | None) -> int | None:
    """Read a paging parameter as a number: digits, or an opaque base64url token decoding to text with one number."""
    if value is None:
        return None
    if value.isascii() and value.isdigit():
        return int(value)
    if not _BASE64URL.fullmatch(value):
        return None
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    numbers = _NUMBER.findall(text) if text.isprintable() else []
    return int(numbers[0]) if len(numbers) == 1 else None


@functools.lru_cache(maxsize=16)
def _query(url: str) -> Mapping[str, tuple[str, ...]]:
    """
    Return the query of ``url``, read-only. Cached: the pages of a listing share their last URL, and
    each page's next URL is read again as the URL of the page after.
    """
    return MappingProxyType({k: tuple(v) for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()})


def pages_from_links(number: int, url: str, next_url: str | None, last_url: str | None, records: int) -> int | None:
    """
    Return how many pages a listing holds, read from one page's links; ``None`` when they cannot tell.

    :param number: the page's number in this pagination (1 for the first page read).
    :param url: the page's URL.
    :param next_url: its ``rel="next"`` URL, or ``None`` on the last page.
    :param last_url: its ``rel="last"`` URL, if the server sent one.
    :param records: the records on the page (an offset steps by a full page's records).
    """
    if next_url is None or last_url == url:
        return number
    if last_url is None:
        return None
    if last_url == next_url:
        return number + 1
    if urlsplit(next_url).path != urlsplit(last_url).path:
        return None
    following, last, current = _query(next_url), _query(last_url), _query(url)
    differing = [key for key in following.keys() | last.keys() if following.get(key) != last.get(key)]
    if len(differing) != 1:
        return None
    key = differing[0]
    step_to, last_at = (paging_position(_single(q.get(key))) for q in (following, last))
    if key in current:
        here = paging_position(_single(current[key]))
    else:  # the first page names no position: offset 0 when the next one starts a page further, else page 1
        here = 0 if step_to == records else 1 if step_to == 2 else None
    if step_to is None or last_at is None or here is None:
        return None
    step = step_to - here
    if step <= 0 or last_at < step_to or (last_at - step_to) % step:
        return None
    return number + 1 + (last_at - step_to) // step


def _single(values: Sequence[str] | None) -> str | None:
    return values[0] if values and len(values) == 1 else None


def pages_from_reach(pages_read: int, top: datetime, reached: datetime, bottom: datetime) -> int | None:
    """
    Estimate the pages of a newest-first listing of ``[bottom, top)`` that has more pages to come.

    :param pages_read: the pages read so far.
    :param top: where the listing starts (the newest end of its window).
    :param reached: the oldest record time on the pages read.
    :param bottom: where it ends (the oldest end of its window).
    :return: at least one page more than read, or ``None`` when the pages read span no time.
    """
    span = (top - bottom).total_seconds()
    covered = (top - reached).total_seconds()
    if covered <= 0 or span <= 0:
        return None
    return max(pages_read + 1, round(pages_read * span / covered))


def budget_hours(requests: float, limit: int | None, window_seconds: float = DEFAULT_WINDOW_SECONDS) -> float:
    """Return the hours of rate-limit budget ``requests`` take at ``limit`` per window (the documented limit if unknown)."""
    return requests / (limit if limit and limit > 0 else DOCUMENTED_LIMIT) * window_seconds / 3600


def describe_rate(limit: int | None, window_seconds: float = DEFAULT_WINDOW_SECONDS) -> str:
    """Return the rate as people write it: ``10,000/h``, or ``100 per 10 s`` for another window."""
    per_window = limit if limit and limit > 0 else DOCUMENTED_LIMIT
    if window_seconds == DEFAULT_WINDOW_SECONDS:
        return f"{per_window:,}/h"
    return f"{per_window:,} per {window_seconds:g} s"


def eta_seconds(
    requests_left: float, requests_per_second: float, status: RateLimitStatus | None, now: datetime
) -> float:
    """Return the seconds ``requests_left`` take at the pace so far, and no sooner than the budget ``status`` allows."""
    paced = requests_left / requests_per_second if requests_per_second > 0 else math.inf
    if status is None or status.remaining is None or status.limit is None or requests_left <= status.remaining:
        return paced
    over = requests_left - status.remaining
    windows_after_reset = math.ceil(over / status.limit) - 1 if status.limit > 0 else 0
    return max(paced, status.seconds_until_reset(now) + windows_after_reset * DEFAULT_WINDOW_SECONDS)


def format_duration(seconds: float) -> str:
    """Return a duration as ``1h05m``, ``4m10s`` or ``12s``; ``unknown`` when it is not finite."""
    if not math.isfinite(seconds):
        return "unknown"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass(frozen=True)
class Estimate:
    """
    What an export or a backfill costs: requests, and hours of rate-limit budget.

    ``str(estimate)`` is the plan in one sentence: ``365 days × 50 pixels ≈ 7,650 requests ≈ 0.77
    hours at 10,000/h``.

    :param resource: the resource's name.
    :param days: the window's length in days.
    :param pages: the data requests of each pixel (by id), in order: its pages, or its summaries.
    :param other_requests: requests besides the pages: one per click of a clicks export (an upper
        bound: clicks a destination already holds are not fetched), and the shop's pixel list.
    :param limit: requests per rate-limit window (``X-RateLimit-Limit``; ``None`` when the server
        sent none, read as the documented 10,000 an hour).
    :param window_seconds: the rate-limit window's length.
    :param exact: whether every page count came from the ``Link`` header: every pixel probed, its
        window read in one request, and no count estimated from the time reach.
    :param spent: the requests the estimate itself sent.
    """

    resource: str
    days: float
    pages: Mapping[str, int]
    other_requests: int = 0
    limit: int | None = None
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    exact: bool = False
    spent: int = 0

    @property
    def requests(self) -> int:
        """Every request the export sends: its pages and the others."""
        return sum(self.pages.values()) + self.other_requests

    @property
    def hours(self) -> float:
        """The hours of budget :attr:`requests` take at :attr:`limit`."""
        return budget_hours(self.requests, self.limit, self.window_seconds)

    def __str__(self) -> str:
        days, pixels = f"{self.days:,.0f}" if self.days >= 10 else f"{self.days:.3g}", len(self.pages)
        return (
            f"{days} day{'s' if days != '1' else ''} × {pixels} pixel{'s' if pixels != 1 else ''} "
            f"≈ {self.requests:,} requests "
            f"≈ {self.hours:.2f} hours at {describe_rate(self.limit, self.window_seconds)}"
        )


class PagingProgress:
    """
    How far a reading of newest-first listings (one per pixel and 60-day chunk) has come, and what is left.

    Fed each page as it arrives (:meth:`page_read`), it keeps the page count of the listing being
    read (exact from the ``Link`` header, or estimated from the time reach), the estimated pages of
    each pixel seen (the later chunks scaled from the current one by their length), and the requests
    that records call for beyond the pages (``follows``). Pixels not yet seen count as the mean of
    those seen.

    :param follows: the member of a record whose value costs one request more (a clicks export's
        ``click_id``), or ``None``.
    :param time_field: the records' time, for the time reach.
    """

    #: Called once the first page is taken in, before anything else is fetched: the moment to log
    #: an estimate that costs no request of its own.
    on_first_page: Callable[[], None] | None = None

    def __init__(self, follows: str | None = None, time_field: str = "event_time") -> None:
        self.follows = follows
        self.time_field = time_field
        self.targets = 0
        self.target = -1
        self.page = 0  # the page's number within its listing (from the resume point after a resume)
        self.listing_pages: int | None = None  # None: unknown
        self.exact = False
        self.all_exact = True  # every pixel's count so far came from the Link header alone
        self.pages_read = 0
        self.follow_ups = 0
        self._listing: tuple[int, int] | None = None
        self._top: datetime | None = None
        self._done_in_target = 0
        self._totals: dict[int, int] = {}

    def page_read(
        self,
        target: int,
        targets: int,
        chunks: Sequence[RequestChunk],
        chunk: int,
        page: PageLike,
        *,
        resumed: bool,
        known: Container[str] = frozenset(),
    ) -> None:
        """
        Take in one page of listing ``(target, chunk)``.

        :param target: the index of the pixel it was read for.
        :param targets: how many pixels the reading covers.
        :param chunks: the window's requests, newest first.
        :param chunk: the index of the page's request.
        :param page: the page.
        :param resumed: whether this listing was resumed from a checkpoint's page URL.
        :param known: ``follows`` values (as text) that cost nothing: the destination holds them.
        """
        share = chunks[chunk]
        if (target, chunk) != self._listing:
            self._done_in_target = (
                self._done_in_target + self.page if self._listing and self._listing[0] == target else 0
            )
            self._listing, self.page = (target, chunk), 0
            span = time_span(page.records, self.time_field) if resumed else None
            self._top = min(share.end, span[1]) if span is not None else share.end
        self.targets, self.target = targets, target
        self.page += 1
        self.pages_read += 1
        if self.follows:
            values = {str(r[self.follows]) for r in page.records if self._in_share(r, share) and r.get(self.follows)}
            self.follow_ups += sum(1 for value in values if value not in known)
        top = self._top or share.end
        pages = pages_from_links(page.number, page.url, page.next_url, page.last_url, len(page.records))
        self.exact = pages is not None
        if pages is None:
            span = time_span(page.records, self.time_field)
            estimate = pages_from_reach(self.page, top, span[0], share.start) if span is not None else None
            pages = max(estimate or 0, self.page + 1)  # there is a next page, or the links would have told
        self.listing_pages = pages
        # The later chunks of this pixel: as many pages per second of window as this one.
        density = pages / max((top - share.start).total_seconds(), 1.0)
        later = [max(1, round(density * (c.end - c.start).total_seconds())) for c in chunks[chunk + 1 :]]
        self.all_exact = self.all_exact and self.exact and not later
        self._totals[target] = self._done_in_target + pages + sum(later)
        if self.pages_read == 1 and self.on_first_page is not None:
            self.on_first_page()

    def _in_share(self, record: Any, share: RequestChunk) -> bool:
        """Tell whether a record is an object the reader keeps: in the share, or without a readable time."""
        if not isinstance(record, Mapping):
            return False
        moment = record_time(record.get(self.time_field))
        return moment is None or share.holds(moment)

    def target_pages(self, target: int) -> int:
        """Return the estimated pages of ``target``: its own once seen, else the mean of those seen."""
        if target in self._totals:
            return self._totals[target]
        return round(sum(self._totals.values()) / len(self._totals)) if self._totals else 0

    def pages_left(self) -> int:
        """Return the pages still to read: the current pixel's, and every later pixel's."""
        if self.target < 0:
            return 0
        current = self._totals[self.target] - self._done_in_target - self.page
        return max(0, current) + sum(self.target_pages(t) for t in range(self.target + 1, self.targets))

    def requests_left(self) -> int:
        """Return the requests still to send: the pages left and the follow-ups their records call for."""
        per_page = self.follow_ups / self.pages_read if self.pages_read else 0.0
        return round(self.pages_left() * (1 + per_page))

    def describe(self) -> str:
        """Return where the reading stands: ``pixel 2 of 5, page 7 of 20`` (``of ~20`` when estimated)."""
        if self.target < 0:
            return "no page read yet"
        total = "" if self.listing_pages is None else f" of {'' if self.exact else '~'}{self.listing_pages}"
        return f"pixel {self.target + 1} of {self.targets}, page {self.page}{total}"

    def estimate(self, resource: str, names: Sequence[str], days: float, limit: int | None = None) -> Estimate:
        """
        Return the cost of reading every target from the first one seen: their pages, or the mean of those seen.

        :param resource: the resource's name.
        :param names: the targets' names (pixel ids), in order.
        :param days: the window's length in days.
        :param limit: requests per rate-limit window, if known.
        """
        first = min(self._totals, default=0)  # after a resume, the targets before it are done
        pages = {name: self.target_pages(index) for index, name in enumerate(names) if index >= first}
        per_page = self.follow_ups / self.pages_read if self.pages_read else 0.0
        follow_ups = round(sum(pages.values()) * per_page)
        exact = self.all_exact and len(self._totals) == len(pages)
        return Estimate(resource, days, pages, follow_ups, limit, exact=exact)


def plan(
    resource: str,
    pixels: Sequence[str],
    chunks: Sequence[RequestChunk],
    pages: Callable[[str, Mapping[str, str]], Iterator[PageLike]] | None,
    path: Callable[[str], str],
    *,
    follows: str | None = None,
) -> Estimate:
    """
    Return what reading ``pixels`` over the window of ``chunks`` costs, from each one's first page.

    :param resource: the resource's name.
    :param pixels: the pixel ids, in order.
    :param chunks: the window's requests, newest first.
    :param pages: yields the pages of a list (path, query), fetching each when asked for: only the
        first page of each pixel's newest request is asked for. ``None`` for purchase summaries, one
        request per pixel and whole UTC day, known without a probe.
    :param path: the path of a pixel's list.
    :param follows: see :class:`PagingProgress`.
    """
    start, end = chunks[-1].start, chunks[0].end  # the chunks' shares partition the window
    days = (end - start) / timedelta(days=1)
    if pages is None:
        return Estimate(resource, days, dict.fromkeys(pixels, len(summary_requests(start, end, chunks[0].bounds))))
    progress = PagingProgress(follows)
    for index, pixel in enumerate(pixels):
        # Only the first page: the generator is dropped before it asks for the next one.
        progress.page_read(index, len(pixels), chunks, 0, next(pages(path(pixel), chunks[0].params)), resumed=False)
    return progress.estimate(resource, pixels, days)
