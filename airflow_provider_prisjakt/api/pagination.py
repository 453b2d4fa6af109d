"""
RFC 8288 ``Link`` header parsing and the rules for following ``rel="next"``.

Pure functions only: no I/O, no Airflow, no HTTP client. ``requests``' own ``Response.links`` is
not used: it drops a link whose rel is ``"next last"`` and one written ``rel="NEXT"``, and both
lose pages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

# Keys under which an object-shaped list response may carry its records, most likely first.
RECORD_KEYS = ("data", "items", "results", "records", "events", "pixels", "content")
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class PaginationError(ValueError):
    """Base class for everything that stops pagination."""


class LinkHeaderError(PaginationError):
    """The ``Link`` header does not follow RFC 8288."""


class ForeignNextLinkError(PaginationError):
    """The next page is on another origin; following it would send the credentials there."""


class RepeatedNextLinkError(PaginationError):
    """The next page is one already fetched; following it would loop forever."""


class UnexpectedBodyError(PaginationError):
    """A list response holds no list of records."""


@dataclass(frozen=True)
class Link:
    """
    One link of a ``Link`` header.

    :param target: the target URL, resolved against the request URL.
    :param rels: the relation types, lower-cased (``rel="next last"`` gives two).
    :param params: the other link parameters, names lower-cased.
    """

    target: str
    rels: frozenset[str]
    params: Mapping[str, str] = field(default_factory=dict)


class _Scanner:
    """A cursor over one header value, with the small grammar RFC 8288 needs."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_whitespace(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "the end"
            raise LinkHeaderError(f"malformed Link header: expected {char!r} at position {self.pos}, found {found}")
        self.pos += 1

    def read_until(self, char: str) -> str:
        end = self.text.find(char, self.pos)
        if end < 0:
            raise LinkHeaderError(f"malformed Link header: missing {char!r} after position {self.pos}")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def read_token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN_CHARS:
            self.pos += 1
        if start == self.pos:
            raise LinkHeaderError(f"malformed Link header: expected a token at position {start}")
        return self.text[start : self.pos]

    def read_quoted(self) -> str:
        self.expect('"')
        chars: list[str] = []
        while True:
            if self.at_end():
                raise LinkHeaderError("malformed Link header: unterminated quoted string")
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(chars)
            if char == "\\":
                if self.at_end():
                    raise LinkHeaderError("malformed Link header: unterminated quoted string")
                char = self.text[self.pos]
                self.pos += 1
            chars.append(char)


def _parse_link_value(scanner: _Scanner, base_url: str) -> Link:
    scanner.skip_whitespace()
    scanner.expect("<")
    reference = scanner.read_until(">").strip()
    params: dict[str, str] = {}
    rels: frozenset[str] = frozenset()
    seen_rel = False
    while True:
        scanner.skip_whitespace()
        if scanner.at_end() or scanner.peek() == ",":
            break
        scanner.expect(";")
        scanner.skip_whitespace()
        if scanner.at_end() or scanner.peek() in ",;":
            continue  # an empty parameter ("<x>; ; rel=next") is tolerated
        name = scanner.read_token().lower()
        scanner.skip_whitespace()
        value = ""
        if scanner.peek() == "=":
            scanner.pos += 1
            scanner.skip_whitespace()
            value = scanner.read_quoted() if scanner.peek() == '"' else scanner.read_token()
        if name == "rel":
            # RFC 8288 3.3: a rel parameter after the first is ignored.
            if not seen_rel:
                rels = frozenset(part.lower() for part in value.split() if part)
                seen_rel = True
        elif name not in params:
            params[name] = value
    try:
        target = urljoin(base_url, reference)
    except ValueError as err:
        raise LinkHeaderError(f"malformed Link header: unusable target {reference!r}") from err
    return Link(target=target, rels=rels, params=params)


def parse_link_header(value: str, base_url: str) -> list[Link]:
    """
    Parse a ``Link`` header (RFC 8288) into links with absolute targets.

    Commas and semicolons inside ``<…>`` and inside quoted strings belong to the value. Relation
    types are compared case-insensitively, and a multi-valued rel such as ``rel="next last"``
    gives one link with both.

    :param value: the header value; several ``Link`` headers may be joined with commas.
    :param base_url: the URL of the request, against which relative targets are resolved.
    :raises LinkHeaderError: if the value does not follow the grammar.
    """
    scanner = _Scanner(value)
    links: list[Link] = []
    while True:
        scanner.skip_whitespace()
        if scanner.at_end():
            return links
        if scanner.peek() == ",":
            scanner.pos += 1  # empty list elements are allowed by RFC 9110's #rule
            continue
        links.append(_parse_link_value(scanner, base_url))
        scanner.skip_whitespace()
        if not scanner.at_end():
            scanner.expect(",")


def find_rel(links: Iterable[Link], rel: str) -> str | None:
    """Return the target of the first link with relation ``rel`` (case-insensitive), if any."""
    wanted = rel.lower()
    for link in links:
        if wanted in link.rels:
            return link.target
    return None


def origin_of(url: str) -> tuple[str, str, int | None]:
    """Return ``(scheme, host, port)`` of a URL, lower-cased, with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        return scheme, host, None  # an unreadable port is no origin's default port
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme)


def same_origin(url: str, other: str) -> bool:
    """Tell whether two URLs share scheme, host and port (RFC 6454)."""
    return origin_of(url) == origin_of(other)


def next_page_url(
    link_header: str | None,
    request_url: str,
    allowed_origin: str,
    seen_urls: Iterable[str] = (),
) -> str | None:
    """
    Return the URL of the next page, or ``None`` on the last page.

    The ``rel="next"`` target is taken as given, never built. It must be on ``allowed_origin``
    (the configured API base), because the request carries the client secret, and it must not be a
    page already fetched.

    :param link_header: the response's ``Link`` header, or ``None``.
    :param request_url: the URL that was requested (the base for relative targets).
    :param allowed_origin: a URL on the origin that may receive credentials.
    :param seen_urls: URLs already fetched in this pagination.
    :raises LinkHeaderError: on a malformed header.
    :raises ForeignNextLinkError: when the next page is on another origin.
    :raises RepeatedNextLinkError: when the next page was already fetched.
    """
    if not link_header or not link_header.strip():
        return None
    target = find_rel(parse_link_header(link_header, request_url), "next")
    if target is None:
        return None
    if not same_origin(target, allowed_origin):
        scheme, host, port = origin_of(target)
        raise ForeignNextLinkError(
            f"refusing to follow the next-page link to {scheme}://{host}:{port}: it is not on the "
            "configured API origin and would receive the client credentials"
        )
    if target in set(seen_urls):
        raise RepeatedNextLinkError(
            "the API's next-page link points to a page already fetched; stopping to avoid a loop"
        )
    return target


def extract_records(body: Any, records_key: str | None = None) -> list[Any]:
    """
    Find the list of records in a list response.

    A body may be a bare JSON array or an object wrapping it. With ``records_key`` the list is
    taken from that member; otherwise from the first of :data:`RECORD_KEYS` holding a list, or from
    the only member that is a list.

    :raises UnexpectedBodyError: when no list can be found.
    """
    if isinstance(body, list):
        return body
    if not isinstance(body, dict):
        raise UnexpectedBodyError(f"expected a JSON array or object, got {type(body).__name__}")
    if records_key is not None:
        value = body.get(records_key)
        if not isinstance(value, list):
            raise UnexpectedBodyError(f"the response has no list under {records_key!r}")
        return value
    for key in RECORD_KEYS:
        value = body.get(key)
        if isinstance(value, list):
            return value
    lists = [value for value in body.values() if isinstance(value, list)]
    if len(lists) == 1:
        return lists[0]
    names = ", ".join(sorted(str(key) for key in body)[:10]) or "none"
    raise UnexpectedBodyError(f"could not find the list of records in the response (members: {names})")


def _key_text(key: Any) -> str:
    """A record key as text, the form :class:`RecentKeys` compares and checkpoints store."""
    return key if type(key) is str else str(key)


class RecentKeys:
    """
    A bounded memory of the most recent record keys, to drop records repeated by shifting pages.

    The API's pages are not stable: events arriving while a client pages shift later pages, so a
    few records of one page show up again at the start of the next. Remembering the recent keys
    catches those repeats with memory that stays flat however long the export.

    Keys are compared as text (``1`` and ``"1"`` are the same key), as checkpoints store them. They
    are kept in two generations: when the newer one reaches ``capacity`` keys it becomes the older
    one, and the previous older one is forgotten. So the last ``capacity`` keys are always
    remembered, and never more than twice that.

    :param capacity: how many of the most recent keys are always remembered.
    :param initial: keys already seen (e.g. from a checkpoint), oldest first.
    :param snapshot_size: how many of the latest keys :meth:`snapshot` returns (for checkpoints).
    """

    def __init__(self, capacity: int, initial: Iterable[Any] = (), snapshot_size: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._older: set[str] = set()
        self._newer: set[str] = set()
        self._latest: deque[str] = deque(maxlen=snapshot_size)
        for key in initial:
            self.first_time(key)

    def __contains__(self, key: object) -> bool:
        text = _key_text(key)
        return text in self._newer or text in self._older

    def _rotate_if_full(self) -> None:
        if len(self._newer) >= self.capacity:
            self._older, self._newer = self._newer, set()

    def _remember_new(self, keys: list[str]) -> None:
        """Remember distinct, unseen keys in order, rotating exactly where one by one would."""
        start = 0
        while start < len(keys):
            room = self.capacity - len(self._newer)
            chunk = keys[start : start + room]
            self._newer.update(chunk)
            start += len(chunk)
            self._rotate_if_full()
        self._latest.extend(keys)

    def first_time(self, key: Any) -> bool:
        """Return True and remember ``key`` unless it was seen recently; ``None`` is always new."""
        if key is None:
            return True
        text = _key_text(key)
        if text in self._newer or text in self._older:
            return False
        self._newer.add(text)
        self._latest.append(text)
        self._rotate_if_full()
        return True

    def keep_new(self, records: list[Any], key_field: str = "id") -> list[Any]:
        """
        Return the records whose key was not seen recently, in order, and remember their keys.

        A record that is not an object, or has no key, is always kept. A page whose keys are
        distinct strings, all new (the usual case), is checked with set operations rather than
        record by record; the result is the same either way. When every record is new,
        ``records`` itself is returned.

        :param records: the records of one page.
        :param key_field: the member holding each record's key.
        """
        try:
            keys = [record[key_field] for record in records]
        except (KeyError, TypeError, IndexError):
            keys = []
        if keys and set(map(type, keys)) == {str}:
            distinct = set(keys)
            if len(distinct) == len(keys) and distinct.isdisjoint(self._newer) and distinct.isdisjoint(self._older):
                self._remember_new(keys)
                return records
        first_time = self.first_time
        return [
            record for record in records if first_time(record.get(key_field) if isinstance(record, Mapping) else None)
        ]

    def snapshot(self) -> list[str]:
        """Return the latest ``snapshot_size`` keys remembered, oldest first."""
        return list(self._latest)
