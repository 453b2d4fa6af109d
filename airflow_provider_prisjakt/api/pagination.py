"""
RFC 8288 ``Link`` header parsing and the rules for following ``rel="next"``.

Pure functions only: no I/O, no Airflow, no HTTP client. ``requests``' own ``Response.links`` is
not used: it drops a link whose rel is ``"next last"`` and one written ``rel="NEXT"``, and both
lose pages.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

# Keys under which an object-shaped list response may carry its records, most likely first.
RECORD_KEYS = ("data", "items", "results", "records", "events", "pixels", "content")
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DEFAULT_PORTS = {"http": 80, "https": 443}
ERRORS_EXCERPT_CHARS = 500
# Members an envelope carries its errors in; never the records.
ERROR_KEYS = ("errors", "error")


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
    return list(_parse_links(value, base_url))


@functools.lru_cache(maxsize=4)
def _parse_links(value: str, base_url: str) -> tuple[Link, ...]:
    # Cached: a page's next link and its last one are read from one header, parsed once.
    scanner = _Scanner(value)
    links: list[Link] = []
    while True:
        scanner.skip_whitespace()
        if scanner.at_end():
            return tuple(links)
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
    seen_urls: Container[str] = (),
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
    if target in seen_urls:  # a set, asked without a copy: a listing may run to thousands of pages
        raise RepeatedNextLinkError(
            "the API's next-page link points to a page already fetched; stopping to avoid a loop"
        )
    return target


class EnvelopeError(PaginationError):
    """
    A list response carries errors and no data.

    :param errors: the envelope's errors, as sent.
    """

    def __init__(self, errors: list[Any]) -> None:
        self.errors = errors
        super().__init__(f"the API answered with errors and no data: {describe_errors(errors)}")


class PageBody(NamedTuple):
    """
    What a list response holds.

    :param records: the records of the page (empty for a null list).
    :param errors: the errors sent alongside the records, to log once as a warning.
    """

    records: list[Any]
    errors: list[Any]


def describe_errors(errors: list[Any], limit: int = ERRORS_EXCERPT_CHARS) -> str:
    """Summarise an envelope's errors in one line: each one's message (or code, or JSON), ``; ``-joined."""
    parts = []
    for error in errors:
        if isinstance(error, Mapping):
            text = next((error[key] for key in ("message", "detail", "title", "code") if error.get(key)), error)
            parts.append(text if isinstance(text, str) else json.dumps(text, default=str, sort_keys=True))
        else:
            parts.append(str(error))
    summary = "; ".join(parts) or "(empty)"
    return summary if len(summary) <= limit else summary[: limit - 1] + "…"


def _errors_of(body: Mapping[str, Any]) -> list[Any]:
    value = next((body[key] for key in ERROR_KEYS if body.get(key)), None)  # empty errors are none
    return value if isinstance(value, list) else [] if value is None else [value]


# A member that holds no list of records: a null list, or nothing that looks like one.
_MISSING = object()


def _find_list(body: Mapping[str, Any], records_key: str | None, nested: bool = False) -> Any:
    """Return the list of records in one object, ``None`` for a null list, or ``_MISSING``."""
    if records_key is not None:
        value = body.get(records_key, _MISSING)
        return value if value is None or isinstance(value, list) else _MISSING
    for key in RECORD_KEYS:
        if isinstance(body.get(key), list):
            return body[key]
    listed = {key: value for key, value in body.items() if isinstance(value, list) and key not in ERROR_KEYS}
    if len(listed) == 1:
        return next(iter(listed.values()))
    if listed and not nested:  # a nested object with several lists is simply not the wrapper
        names = ", ".join(sorted(str(key) for key in listed))
        raise UnexpectedBodyError(f"the response holds several lists and none is known to hold records ({names})")
    return None if any(key in body and body[key] is None for key in RECORD_KEYS) else _MISSING


def extract_page(body: Any, records_key: str | None = None) -> PageBody:
    """
    Find the records of a list response, and any errors sent with them.

    A body may be a bare JSON array or an object wrapping it, directly or one level down
    (``{"data": {"events": [...]}}``). With ``records_key`` the list is taken from that member;
    otherwise from the first of :data:`RECORD_KEYS` holding a list, or from the only member that is
    a list. A null list (``{"events": null}``) is an empty page. Errors (``errors``, or ``error``)
    sent with a list are returned with it; errors with no list are an :class:`EnvelopeError`.

    :raises EnvelopeError: when the body carries errors and no records.
    :raises UnexpectedBodyError: when no list can be found.
    """
    if isinstance(body, list):
        return PageBody(body, [])
    if not isinstance(body, dict):
        raise UnexpectedBodyError(f"expected a JSON array or object, got {type(body).__name__}")
    errors = _errors_of(body)
    found = _find_list(body, records_key)
    if found is _MISSING:  # one level down: {"data": {"events": [...]}}
        inner = [
            _find_list(value, records_key, nested=True)
            for key, value in body.items()
            if isinstance(value, dict) and key not in ERROR_KEYS
        ]
        lists = [value for value in inner if isinstance(value, list)]
        found = lists[0] if len(lists) == 1 else None if not lists and None in inner else _MISSING
    if isinstance(found, list):
        return PageBody(found, errors)
    if errors:
        raise EnvelopeError(errors)
    if found is None:
        return PageBody([], [])
    if records_key is not None:
        raise UnexpectedBodyError(f"the response has no list under {records_key!r}")
    names = ", ".join(sorted(str(key) for key in body)[:10]) or "none"
    raise UnexpectedBodyError(f"could not find the list of records in the response (members: {names})")


def extract_records(body: Any, records_key: str | None = None) -> list[Any]:
    """
    Find the list of records in a list response; :func:`extract_page` without the errors.

    :raises PaginationError: as :func:`extract_page`.
    """
    return extract_page(body, records_key).records
