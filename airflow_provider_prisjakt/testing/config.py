"""
Configuration and record types of the Prisjakt sandbox.

Everything here is a plain dataclass so that users can build, copy and
compare configurations in ordinary test code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

#: How ``X-RateLimit-Reset`` is expressed: milliseconds until the reset (``"duration"``),
#: the reset moment as epoch milliseconds (``"epoch"``) or epoch seconds
#: (``"epoch_seconds"``), epoch milliseconds that lie in the past whenever the budget
#: is spent (``"past"``), or a value nobody can read (``"garbage"``).
ResetStyle = Literal["duration", "epoch", "epoch_seconds", "past", "garbage"]
#: Form of ``Retry-After``: absent, delta seconds, or an HTTP-date (RFC 9110).
RetryAfterForm = Literal["none", "seconds", "http_date"]
#: Shape of list responses, see :class:`SandboxConfig`.
Envelope = Literal["array", "object", "null_when_empty", "nested", "data_and_errors"]
#: How page URLs in the ``Link`` header are written, see :class:`SandboxConfig`.
LinkStyle = Literal["absolute", "path", "relative"]
#: Misbehaviour of the ``Link`` header, see :class:`SandboxConfig`.
LinkMode = Literal["normal", "foreign", "loop", "malformed"]
#: Which authentication schemes the API accepts.
AuthMode = Literal["headers", "oauth2", "both"]
#: Case of the ``rel`` values in the ``Link`` header.
RelCase = Literal["lower", "upper"]
#: How the server reads ``from``/``to``, see :class:`SandboxConfig`.
WindowBounds = Literal["exclusive", "inclusive", "left_open", "date_only"]
#: Members of event records, see :class:`SandboxConfig`.
EventFields = Literal["documented", "extended"]
#: Members of click records, see :class:`SandboxConfig`.
ClickFields = Literal["extended", "candidates"]
#: Shape of purchase-summary bodies, see :class:`SandboxConfig`.
SummaryShape = Literal["currencies", "bare_list", "wrapped_list", "by_currency"]
#: Member holding the number of purchases of a currency.
SummaryCountMember = Literal["count", "purchases"]
#: Member holding the total value of a currency's purchases.
SummaryAmountMember = Literal["total_amount", "total", "amount", "sum", "revenue"]
#: What a burst 429 says about the budget: spent (``Remaining: 0``, a short reset) or
#: left (the client's real remaining budget and reset: a short-term limit only).
BurstBudget = Literal["spent", "left"]
#: ``Retry-After`` of burst 429s: ``"inherit"`` follows :attr:`SandboxConfig.retry_after`.
BurstRetryAfter = Literal["inherit", "none", "seconds", "http_date"]

#: Fault kinds accepted by :meth:`PrisjaktSandbox.fail_next`.
FAULT_KINDS: frozenset[str] = frozenset(
    {"500", "503", "html502", "drop", "truncate", "stall", "429", "redirect", "errors"}
)


def check_choice(name: str, value: Any, choices: Any) -> None:
    """
    Refuse a knob value outside its closed set.

    :param name: Knob name, for the message.
    :param value: Given value.
    :param choices: A ``Literal`` type listing the allowed values.
    :raises ValueError: When ``value`` is not one of them.
    """
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, not {value!r}")


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
    :param burst_reset_ms: How long a burst lasts, in milliseconds: the
        ``X-RateLimit-Reset`` duration of a ``"spent"`` burst 429 and the wait its
        ``Retry-After`` announces.
    :param burst_budget: ``"spent"`` (default): a burst 429 says ``X-RateLimit-Remaining: 0``
        and a reset :attr:`burst_reset_ms` ahead, like a spent budget. ``"left"``: it shows
        the client's real budget (``Remaining`` as counted, the window's real reset), as a
        short-term limit of a server with plenty of budget left would.
    :param burst_retry_after: ``Retry-After`` of burst 429s: ``"inherit"`` (default, as
        :attr:`SandboxConfig.retry_after` says), ``"none"``, ``"seconds"`` (delta seconds,
        rounded up) or ``"http_date"`` (an RFC 9110 date that far ahead, rounded up to
        the second).
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
    burst_budget: BurstBudget = "spent"
    burst_retry_after: BurstRetryAfter = "inherit"

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
        if self.burst_reset_ms < 0:
            raise ValueError("burst_reset_ms must not be negative")
        check_choice("burst_budget", self.burst_budget, BurstBudget)
        check_choice("burst_retry_after", self.burst_retry_after, BurstRetryAfter)


def _default_shops() -> dict[int, int]:
    return {4242: 3, 4343: 1}


@dataclass(frozen=True)
class SandboxConfig:
    """
    Configuration of a :class:`PrisjaktSandbox`.

    Every part of the API that the reference (``prisjakt-api/README.md`` and
    ``openapi.yaml``) marks UNKNOWN or INFERRED is a knob. Defaults follow the
    reference where it says something (event records carry only the documented
    members) and the sandbox's long-standing behaviour elsewhere.

    **Server and data**

    :param host: Interface to bind; ``0.0.0.0`` is advertised as ``127.0.0.1``.
    :param port: TCP port; ``0`` picks a free port.
    :param seed: Seed of all generated data (pixels, events, clicks, clients) and of
        :attr:`rate_headers_missing_rate`.
    :param shops: Shop id to number of pixels.
    :param events_per_pixel: Seeded events per pixel, spread over the period.
    :param period_start: Start (inclusive) of the period holding the seeded events.
    :param period_end: End (exclusive) of that period.
    :param new_events_per_page: Events added to a pixel after each events page served.
    :param latency_ms: Delay before every response is written, in milliseconds (a
        wait, not a busy loop; it ends early when the sandbox stops), to play the network.
    :param verbose: Log each request line to stderr.

    **Records**

    :param event_fields: ``"documented"`` (default): event records carry exactly the
        members the reference documents: ``id``, ``click_id``, ``external_event_id``,
        ``event_name``, ``event_time`` and ``data`` (``number_of_items``, ``amount``,
        ``currency``). ``"extended"`` adds ``pixel_id``, a member the reference does not
        show, so that a client relying on it can be told apart.
    :param click_fields: The reference documents only a click's ``id``.
        ``"extended"`` (default): ``id``, ``pixel_id``, ``shop_id``, ``clicked_at``,
        ``product_id``, ``offer_id``, ``cost``, ``currency``. ``"candidates"``: only the
        reference's inferred candidates ``id``, ``shop_id``, ``clicked_at``,
        ``product_id`` and ``offer_id`` (no ``pixel_id``).
    :param window_bounds: How ``from``/``to`` select events and summaries (both
        endpoints alike): ``"exclusive"`` (default, ``[from, to)``), ``"inclusive"``
        (``[from, to]``), ``"left_open"`` (``(from, to]``) or ``"date_only"`` (only the
        date part of each value as written is read: whole UTC days from the ``from``
        day through the ``to`` day, both included). ``from`` after ``to`` is a 400 in
        every mode; ``from == to`` is accepted by ``"inclusive"`` and ``"date_only"``.
        The 60-day limit applies to ``to - from`` as read (dates for ``"date_only"``).

    **Lists and pages**

    :param page_size: Default page size of list endpoints.
    :param max_page_size: Largest page size a client may ask for.
    :param page_size_param: Query parameter carrying the page size.
    :param envelope: Shape of list bodies: ``"array"`` (default, a bare list);
        ``"object"`` (``{member: [...], "meta": {"count": n}}``); ``"null_when_empty"``
        (as ``"object"``, but an empty page is ``{member: null, ...}``); ``"nested"``
        (``{member: {"events"|"pixels": [...]}, "meta": ...}``); ``"data_and_errors"``
        (as ``"object"`` plus ``"errors": [{"code", "message"}]`` on every page).
        An errors-only envelope (``{member: null, "errors": [...]}``) is served on
        request with :meth:`PrisjaktSandbox.fail_next` ``("errors")``.
    :param envelope_member: The member holding the list in wrapped envelopes
        (default ``"data"``; e.g. ``"events"`` plays ``{"events": null}``).
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
    :param link_split: Send one ``Link`` header field per link instead of one
        comma-separated field (RFC 9110 allows both; some clients read only the first).
    :param link_unquoted_rel: Write single-token relations unquoted (``rel=next``).
    :param link_extra_params: Give each link further parameters around ``rel``:
        ``<...>; title="events, page 3"; rel="next"; type="application/json"``
        (a quoted comma included).

    **Purchase summaries** (the reference documents their meaning, not their shape)

    :param summary_shape: ``"currencies"`` (default,
        ``{"from", "to", "currencies": [{"currency", <count>, <amount>}]}``);
        ``"bare_list"`` (``[{"currency", <count>, <amount>}]``); ``"wrapped_list"``
        (``{"from", "to", <summary_member>: [...]}``); ``"by_currency"``
        (``{"SEK": {<count>, <amount>}, ...}``).
    :param summary_member: The list's member in ``"wrapped_list"`` (default ``"summary"``).
    :param summary_count_member: Name of the purchase count: ``"count"`` or ``"purchases"``.
    :param summary_amount_member: Name of the total value: ``"total_amount"``,
        ``"total"``, ``"amount"``, ``"sum"`` or ``"revenue"``.

    **Rate limiting**

    :param rate_limit: Requests per window and client id.
    :param rate_window: Window length in seconds; windows are fixed and start at
        a client's first request.
    :param reset_style: ``X-RateLimit-Reset`` as ``"duration"`` (default, ms until the
        reset), ``"epoch"`` (epoch ms), ``"epoch_seconds"`` (epoch seconds, ten
        digits), ``"past"`` (epoch ms, but a moment already past whenever
        ``X-RateLimit-Remaining`` is 0) or ``"garbage"`` (an unreadable value).
    :param retry_after: ``Retry-After`` on 429 answers of a spent budget: ``"none"``
        (default), ``"seconds"`` (whole seconds, rounded up) or ``"http_date"``.
        ``True`` and ``False`` are accepted for ``"seconds"`` and ``"none"``.
    :param rate_headers_missing_rate: Share of API responses (429s included) sent
        without the ``X-RateLimit-*`` headers, drawn from a generator seeded with
        :attr:`seed`, so the same request sequence always loses the same headers.

    **Errors, auth, faults, wire**

    :param problem_content_type: Media type of error bodies.
    :param clients: Known API clients; ``None`` means the two default clients
        (a ``shop_user`` owning all shops and an ``event_publisher``).
    :param auth_mode: ``"headers"`` (``client-id``/``client-secret``), ``"oauth2"``
        (bearer tokens from ``/oauth2/token``) or ``"both"``.
    :param token_ttl: Lifetime of issued access tokens in seconds.
    :param faults: Random fault injection.
    :param gzip: Compress bodies (``Content-Encoding: gzip``) for clients that send
        ``Accept-Encoding: gzip``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 42
    shops: dict[int, int] = field(default_factory=_default_shops)
    events_per_pixel: int = 2000
    period_start: datetime = datetime(2026, 10, 1, tzinfo=UTC)
    period_end: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    event_fields: EventFields = "documented"
    click_fields: ClickFields = "extended"
    window_bounds: WindowBounds = "exclusive"
    page_size: int = 100
    max_page_size: int = 1000
    page_size_param: str = "limit"
    envelope: Envelope = "array"
    envelope_member: str = "data"
    link_style: LinkStyle = "absolute"
    combined_rels: bool = False
    rel_case: RelCase = "lower"
    link_mode: LinkMode = "normal"
    link_split: bool = False
    link_unquoted_rel: bool = False
    link_extra_params: bool = False
    summary_shape: SummaryShape = "currencies"
    summary_member: str = "summary"
    summary_count_member: SummaryCountMember = "count"
    summary_amount_member: SummaryAmountMember = "total_amount"
    rate_limit: int = 10000
    rate_window: float = 3600.0
    reset_style: ResetStyle = "duration"
    retry_after: RetryAfterForm | bool = "none"
    rate_headers_missing_rate: float = 0.0
    problem_content_type: str = "application/json"
    clients: tuple[SandboxClient, ...] | None = None
    auth_mode: AuthMode = "both"
    token_ttl: int = 86399
    new_events_per_page: int = 0
    faults: FaultConfig = field(default_factory=FaultConfig)
    gzip: bool = False
    latency_ms: float = 0.0
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
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        if not self.envelope_member or not self.summary_member:
            raise ValueError("envelope_member and summary_member must not be empty")
        if isinstance(self.retry_after, bool):
            # The knob was a flag before Retry-After had two forms; a flag still means seconds.
            object.__setattr__(self, "retry_after", "seconds" if self.retry_after else "none")
        if not 0 <= self.rate_headers_missing_rate <= 1:
            raise ValueError("rate_headers_missing_rate must lie in [0, 1]")
        for name, choices in (
            ("event_fields", EventFields),
            ("click_fields", ClickFields),
            ("window_bounds", WindowBounds),
            ("envelope", Envelope),
            ("link_style", LinkStyle),
            ("rel_case", RelCase),
            ("link_mode", LinkMode),
            ("summary_shape", SummaryShape),
            ("summary_count_member", SummaryCountMember),
            ("summary_amount_member", SummaryAmountMember),
            ("reset_style", ResetStyle),
            ("retry_after", RetryAfterForm),
            ("auth_mode", AuthMode),
        ):
            check_choice(name, getattr(self, name), choices)

    @property
    def retry_after_form(self) -> RetryAfterForm:
        """:attr:`retry_after` as one of ``"none"``, ``"seconds"``, ``"http_date"``."""
        if isinstance(self.retry_after, bool):
            return "seconds" if self.retry_after else "none"
        return self.retry_after


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
