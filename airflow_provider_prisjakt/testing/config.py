"""
Configuration and record types of the Prisjakt sandbox.

Everything here is a plain dataclass so that users can build, copy and
compare configurations in ordinary test code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

#: How ``X-RateLimit-Reset`` is expressed: milliseconds until the reset, or the
#: reset moment as epoch milliseconds.
ResetStyle = Literal["duration", "epoch"]
#: Shape of list responses: a bare JSON array or ``{"data": [...], "meta": {...}}``.
Envelope = Literal["array", "object"]
#: How page URLs in the ``Link`` header are written, see :class:`SandboxConfig`.
LinkStyle = Literal["absolute", "path", "relative"]
#: Misbehaviour of the ``Link`` header, see :class:`SandboxConfig`.
LinkMode = Literal["normal", "foreign", "loop", "malformed"]
#: Which authentication schemes the API accepts.
AuthMode = Literal["headers", "oauth2", "both"]
#: Case of the ``rel`` values in the ``Link`` header.
RelCase = Literal["lower", "upper"]

#: Fault kinds accepted by :meth:`PrisjaktSandbox.fail_next`.
FAULT_KINDS: frozenset[str] = frozenset({"500", "503", "html502", "drop", "truncate", "stall", "429", "redirect"})


@dataclass(frozen=True)
class SandboxClient:
    """
    An API client (credential pair) known to the sandbox.

    :param client_id: Value of the ``client-id`` header.
    :param client_secret: Value of the ``client-secret`` header.
    :param roles: Roles of the client; read endpoints need ``shop_user``.
    :param shops: Shop ids the client may read, or ``None`` for every shop.
    """

    client_id: str
    client_secret: str
    roles: tuple[str, ...] = ("shop_user",)
    shops: tuple[int, ...] | None = None


@dataclass(frozen=True)
class FaultConfig:
    """
    Random fault injection on API paths (never on ``/oauth2/token`` or ``/health``).

    Each API request draws one number from a :class:`random.Random` seeded with
    :attr:`seed`, so a given sequence of requests always meets the same faults.
    The rates are probabilities in ``[0, 1]``; their sum must not exceed 1.

    :param seed: Seed of the fault random generator.
    :param error_rate: Share of requests answered with a JSON problem 500 or 503.
    :param html_error_rate: Share answered with a ``text/html`` 502 "Bad Gateway" page.
    :param drop_rate: Share whose connection is closed without any response.
    :param truncate_rate: Share whose body is cut in half (full ``Content-Length``).
    :param stall_rate: Share answered only after :attr:`stall_seconds`.
    :param stall_seconds: Length of a stall; a stall ends early when the server stops.
    :param burst_429_rate: Share that starts a run of :attr:`burst_length` 429 answers.
    :param burst_length: Number of consecutive 429 answers in a burst.
    :param burst_reset_ms: ``X-RateLimit-Reset`` (as a duration) sent with burst 429s.
    """

    seed: int = 0
    error_rate: float = 0.0
    html_error_rate: float = 0.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 2.0
    burst_429_rate: float = 0.0
    burst_length: int = 3
    burst_reset_ms: int = 500

    def __post_init__(self) -> None:
        rates = (
            self.error_rate,
            self.html_error_rate,
            self.drop_rate,
            self.truncate_rate,
            self.stall_rate,
            self.burst_429_rate,
        )
        if any(rate < 0 or rate > 1 for rate in rates) or sum(rates) > 1 + 1e-9:
            raise ValueError("fault rates must lie in [0, 1] and sum to at most 1")
        if self.burst_length < 1:
            raise ValueError("burst_length must be at least 1")


def _default_shops() -> dict[int, int]:
    return {4242: 3, 4343: 1}


@dataclass(frozen=True)
class SandboxConfig:
    """
    Configuration of a :class:`PrisjaktSandbox`.

    :param host: Interface to bind; ``0.0.0.0`` is advertised as ``127.0.0.1``.
    :param port: TCP port; ``0`` picks a free port.
    :param seed: Seed of all generated data (pixels, events, clicks, clients).
    :param shops: Shop id to number of pixels.
    :param events_per_pixel: Seeded events per pixel, spread over the period.
    :param period_start: Start (inclusive) of the period holding the seeded events.
    :param period_end: End (exclusive) of that period.
    :param page_size: Default page size of list endpoints.
    :param max_page_size: Largest page size a client may ask for.
    :param page_size_param: Query parameter carrying the page size.
    :param envelope: ``"array"`` (bare list) or ``"object"``
        (``{"data": [...], "meta": {"count": n}}``).
    :param link_style: ``"absolute"`` (``http://host:port/click-conversion/...``),
        ``"path"`` (path-absolute ``/click-conversion/...``) or ``"relative"``
        (a relative-path reference to the last path segment, such as
        ``events?from=...&cursor=...``, resolved against the request URL).
    :param combined_rels: Send the next link of the second-to-last page as
        ``rel="next last"`` instead of two links.
    :param rel_case: ``"upper"`` sends ``rel="NEXT"`` and so on.
    :param link_mode: ``"normal"``; ``"foreign"`` (next link on another origin,
        ``http://203.0.113.9``); ``"loop"`` (next link of page 2 points to page 2);
        ``"malformed"`` (an unparsable ``Link`` header).
    :param rate_limit: Requests per window and client id.
    :param rate_window: Window length in seconds; windows are fixed and start at
        a client's first request.
    :param reset_style: ``X-RateLimit-Reset`` as ``"duration"`` or ``"epoch"`` milliseconds.
    :param retry_after: Add ``Retry-After`` (whole seconds, rounded up) to 429 answers.
    :param problem_content_type: Media type of error bodies.
    :param clients: Known API clients; ``None`` means the two default clients
        (a ``shop_user`` owning all shops and an ``event_publisher``).
    :param auth_mode: ``"headers"`` (``client-id``/``client-secret``), ``"oauth2"``
        (bearer tokens from ``/oauth2/token``) or ``"both"``.
    :param token_ttl: Lifetime of issued access tokens in seconds.
    :param new_events_per_page: Events added to a pixel after each events page served.
    :param faults: Random fault injection.
    :param verbose: Log each request line to stderr.
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 42
    shops: dict[int, int] = field(default_factory=_default_shops)
    events_per_pixel: int = 2000
    period_start: datetime = datetime(2026, 10, 1, tzinfo=UTC)
    period_end: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    page_size: int = 100
    max_page_size: int = 1000
    page_size_param: str = "limit"
    envelope: Envelope = "array"
    link_style: LinkStyle = "absolute"
    combined_rels: bool = False
    rel_case: RelCase = "lower"
    link_mode: LinkMode = "normal"
    rate_limit: int = 10000
    rate_window: float = 3600.0
    reset_style: ResetStyle = "duration"
    retry_after: bool = False
    problem_content_type: str = "application/json"
    clients: tuple[SandboxClient, ...] | None = None
    auth_mode: AuthMode = "both"
    token_ttl: int = 86399
    new_events_per_page: int = 0
    faults: FaultConfig = field(default_factory=FaultConfig)
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.period_start.tzinfo is None or self.period_end.tzinfo is None:
            raise ValueError("period_start and period_end must be timezone-aware")
        if self.period_end <= self.period_start:
            raise ValueError("period_end must be after period_start")
        if self.events_per_pixel < 0:
            raise ValueError("events_per_pixel must not be negative")
        if not 1 <= self.page_size <= self.max_page_size:
            raise ValueError("page_size must lie in [1, max_page_size]")
        if self.rate_limit < 0 or self.rate_window <= 0:
            raise ValueError("rate_limit must be >= 0 and rate_window > 0")
        if sum(self.shops.values()) > 4096:
            raise ValueError("at most 4096 pixels are supported")


@dataclass(frozen=True)
class RecordedRequest:
    """
    One request the sandbox received; secrets and tokens are never recorded.

    :param method: HTTP method.
    :param path: Request path without the query string.
    :param query: Parsed query string.
    :param status: Status sent, or ``0`` when the connection was dropped.
    :param client_id: Client the request was attributed to, if any.
    :param fault: Fault kind injected into this request, if any.
    :param started_at: :func:`time.monotonic` when the request arrived.
    :param page_key: Stable identity of the list page served, such as
        ``"<pixel_id>:<from>:<to>:<offset>"`` for events and
        ``"shop:<shop_id>:<offset>"`` for pixels.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    client_id: str | None
    fault: str | None
    started_at: float
    page_key: str | None
