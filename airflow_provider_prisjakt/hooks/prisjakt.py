"""Hooks for the Prisjakt Click and Conversion API: the connection, the endpoints, and the async budget check."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_prisjakt.api.estimate import Estimate, plan
from airflow_provider_prisjakt.api.resources import UnreadableSummaryError, normalise_purchase_summary
from airflow_provider_prisjakt.api.windows import (
    WindowError,
    format_api_time,
    request_chunks,
    split_window,
    to_utc,
)
from airflow_provider_prisjakt.client.auth import PrisjaktAuth, open_session, user_agent
from airflow_provider_prisjakt.client.budget import RequestBudget, RequestStats
from airflow_provider_prisjakt.client.transport import AsyncTransport, Page, RequestCycle, Transport
from airflow_provider_prisjakt.exceptions import (
    PrisjaktAuthError,
    PrisjaktConfigError,
    PrisjaktError,
    PrisjaktRateLimitError,
)
from airflow_provider_prisjakt.hooks.connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    ConnectionSettings,
    connection_settings,
    legacy_form_widgets,
    ui_field_behaviour,
)

if TYPE_CHECKING:
    import requests

    from airflow_provider_prisjakt.api.ratelimit import RateLimitStatus
    from airflow_provider_prisjakt.api.windows import RequestChunk, TimeLike


def path_segment(value: Any, name: str) -> str:
    """Return ``value`` as one percent-encoded URL path segment; an empty one is refused, naming ``name``."""
    text = str(value).strip()
    if not text:
        raise PrisjaktConfigError(f"{name} must not be empty")
    return quote(text, safe="")


@contextlib.contextmanager
def window_errors_as_config_errors() -> Iterator[None]:
    """Turn a window the user gave wrong into the configuration error a task fails with."""
    try:
        yield
    except WindowError as err:
        raise PrisjaktConfigError(str(err)) from None


def client_path(client_id: str) -> str:
    """Return the path of an API client (its id and roles)."""
    return f"clients/{path_segment(client_id, 'client_id')}"


class PrisjaktHook(BaseHook):
    """
    Interact with the Prisjakt Click and Conversion API.

    The hook reads a ``prisjakt`` connection (login = client id, password = client secret, host = API
    base URL) on first use and sends every request through one transport: authentication, the rate
    limit, retries and Link-header pagination.

    :param prisjakt_conn_id: the connection to use.
    :param timeout: overrides the connection's ``timeout`` extra (seconds).
    :param max_retries: overrides the connection's ``max_retries`` extra (tries per request).
    :param max_inline_wait: overrides the connection's ``max_inline_wait`` extra (seconds).
    :param page_size: overrides the connection's ``page_size`` extra.
    :param rate_limit_reserve: overrides the connection's ``rate_limit_reserve`` extra.
    """

    conn_name_attr = "prisjakt_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Prisjakt"

    def __init__(
        self,
        prisjakt_conn_id: str = DEFAULT_CONN_ID,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_inline_wait: float | None = None,
        page_size: int | None = None,
        rate_limit_reserve: int | None = None,
    ) -> None:
        super().__init__()
        self.prisjakt_conn_id = prisjakt_conn_id
        self._overrides = {
            "timeout": timeout,
            "max_retries": max_retries,
            "max_inline_wait": max_inline_wait,
            "page_size": page_size,
            "rate_limit_reserve": rate_limit_reserve,
        }
        self._session: requests.Session | None = None
        self.stats = RequestStats()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the extra fields of the connection form, for Airflow before 3.2."""
        return legacy_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return relabeling, placeholders and hidden fields of the connection form."""
        return ui_field_behaviour()

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The validated settings of the connection, read on first use (never at DAG parse time)."""
        return connection_settings(self.get_connection(self.prisjakt_conn_id), self.prisjakt_conn_id, self._overrides)

    @property
    def base_url(self) -> str:
        """The API base URL of the connection."""
        return self.settings.base_url

    @cached_property
    def auth(self) -> PrisjaktAuth:
        """The credentials (and OAuth2 token cache) of every request to the API's origin."""
        return PrisjaktAuth(self.settings, user_agent=user_agent())

    @cached_property
    def budget(self) -> RequestBudget:
        """The request budget: the last rate-limit status and the pacing it implies."""
        return RequestBudget.from_settings(self.settings)

    @property
    def rate_limit(self) -> RateLimitStatus | None:
        """The rate-limit status the last response reported, or ``None`` before any response."""
        # Before the first request there is no budget yet, and asking must not read the connection.
        return self.budget.status if "budget" in self.__dict__ else None

    @cached_property
    def transport(self) -> Transport:
        """The loop every request goes through: pacing, retries, redirects and error mapping."""
        cycle = RequestCycle.for_connection(self.settings, self.budget, self.auth, stats=self.stats, log=self.log)
        return Transport(self.get_conn(), cycle, timeout=self.settings.timeout)

    def get_conn(self) -> requests.Session:
        """Return the hook's pooled session, built on first use: auth, user agent, no retries of its own."""
        if self._session is None:
            self._session = open_session(self.auth)
            self.log.debug("Prisjakt session for %s (auth %s)", self.settings.base_url, self.settings.auth_type)
        return self._session

    def close(self) -> None:
        """Close the pooled session; the next request opens a new one."""
        if self._session is not None:
            self._session.close()
            self._session = None
        self.__dict__.pop("transport", None)  # it holds the closed session

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """
        Send one API request with pacing, retries and error mapping; return the successful response.

        :param method: HTTP method.
        :param path_or_url: a path below the base URL, or an absolute URL on the same origin.
        :param kwargs: ``params``, ``json_body`` or ``expect_json``, as
            :meth:`~airflow_provider_prisjakt.client.transport.Transport.send` takes them.
        :raises PrisjaktAPIError: (a subclass) when the API refuses the request or retries run out.
        """
        return self.transport.send(method, path_or_url, **kwargs).response

    def get_json(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a path and return the decoded JSON body."""
        return self.transport.send("GET", path_or_url, params=params).body

    def iter_pages(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        start_url: str | None = None,
        records_key: str | None = None,
    ) -> Iterator[Page]:
        """
        Yield the pages of a list endpoint, following ``rel="next"`` Link headers as given.

        :param path: the list endpoint, e.g. ``pixels/{id}/events``.
        :param params: query parameters of the first page only; later pages use the next URL as is.
        :param start_url: resume from this next-page URL (from a checkpoint) instead of the first page.
        :param records_key: the member holding the list when the body is an object, if not guessable.
        :raises PrisjaktPaginationError: on a foreign, repeated or malformed next link.
        """
        if start_url is not None:
            return self.transport.pages(start_url, records_key=records_key)
        query = dict(params or {})
        if self.settings.page_size:
            query[self.settings.page_size_param] = self.settings.page_size
        return self.transport.pages(path, query, records_key=records_key)

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, *, records_key: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every record of a list endpoint across all pages, dropping records repeated by shifting pages."""
        # The readers' de-duplication memory: one for every reading path.
        from airflow_provider_prisjakt.api.recent_keys import RecentKeys

        memory = RecentKeys()
        for page in self.iter_pages(path, params, records_key=records_key):
            yield from memory.keep_new(page.records)
            memory.turn_page()
            del page  # released before the next page is fetched; see iter_pages

    @staticmethod
    def pixels_path(shop_id: int | str) -> str:
        """Return the path of a shop's pixel list."""
        return f"shops/{path_segment(shop_id, 'shop_id')}/pixels"

    @staticmethod
    def events_path(pixel_id: str) -> str:
        """Return the path of a pixel's event list."""
        return f"pixels/{path_segment(pixel_id, 'pixel_id')}/events"

    @staticmethod
    def purchase_summary_path(pixel_id: str) -> str:
        """Return the path of a pixel's purchase summary."""
        return f"pixels/{path_segment(pixel_id, 'pixel_id')}/purchase-summary"

    @staticmethod
    def window_chunks(start: TimeLike, end: TimeLike) -> list[tuple[datetime, datetime]]:
        """Return ``[start, end)`` as API-sized windows (at most 60 days), newest first."""
        with window_errors_as_config_errors():
            return split_window(to_utc(start, "start"), to_utc(end, "end"))

    def request_chunks(self, start: TimeLike, end: TimeLike) -> list[RequestChunk]:
        """Return the requests that read ``[start, end)`` as the connection's ``window_bounds`` say, newest first."""
        with window_errors_as_config_errors():
            return request_chunks(to_utc(start, "start"), to_utc(end, "end"), self.settings.window_bounds)

    @staticmethod
    def window_params(start: datetime, end: datetime) -> dict[str, str]:
        """Return the ``from``/``to`` query parameters of a window, ISO-8601 UTC."""
        return {"from": format_api_time(start), "to": format_api_time(end)}

    def get_client(self, client_id: str | None = None) -> dict[str, Any]:
        """Return the API client (``id`` and ``roles``); by default the connection's own client."""
        return self.get_json(client_path(client_id or self.settings.client_id))

    def get_pixels(self, shop_id: int | str) -> list[dict[str, Any]]:
        """Return the pixels of a shop."""
        return list(self.paginate(self.pixels_path(shop_id)))

    def iter_events(self, pixel_id: str, start: TimeLike, end: TimeLike) -> Iterator[dict[str, Any]]:
        """
        Yield every conversion event of a pixel in ``[start, end)``, newest first, each once.

        This is the operators' reading path (:func:`~airflow_provider_prisjakt.export.readers.read_events`):
        windows longer than the API's 60 days are read in chunks, repeats of shifting pages dropped.
        """
        from airflow_provider_prisjakt.export.readers import read_events

        yield from read_events(self, pixel_id, start, end)

    def get_purchase_summary(self, pixel_id: str, start: TimeLike, end: TimeLike) -> dict[str, Any]:
        """
        Return the number and total value of purchases per currency in ``[start, end)``.

        One shape whatever the server sends: ``{"from", "to", "currencies": [{"currency", "count",
        "total_amount"}]}``. Windows longer than 60 days are requested in chunks and added up.

        :raises PrisjaktError: when the server's summary cannot be read, naming the members it had.
        """
        chunks = self.window_chunks(start, end)
        path = self.purchase_summary_path(pixel_id)
        try:
            parts = [normalise_purchase_summary(self.get_json(path, self.window_params(*c)), *c) for c in chunks]
        except UnreadableSummaryError as err:
            raise PrisjaktError(f"{err} (GET {path})") from None
        if len(parts) == 1:
            return parts[0]
        counts: Counter[str] = Counter()
        amounts: defaultdict[str, float] = defaultdict(float)
        for entry in (entry for part in parts for entry in part["currencies"]):
            counts[entry["currency"]] += entry["count"] or 0
            amounts[entry["currency"]] += entry["total_amount"] or 0
        added_up = [{"currency": c, "count": counts[c], "total_amount": round(amounts[c], 2)} for c in counts]
        return normalise_purchase_summary(added_up, chunks[-1][0], chunks[0][1])  # chunks come newest first

    def get_event(self, event_id: str) -> dict[str, Any]:
        """Return one conversion event."""
        return self.get_json(f"events/{path_segment(event_id, 'event_id')}")

    def get_click(self, click_id: str) -> dict[str, Any]:
        """Return one click."""
        return self.get_json(f"clicks/{path_segment(click_id, 'click_id')}")

    def estimate(
        self,
        pixel_ids: str | Sequence[str] | None,
        start: TimeLike,
        end: TimeLike,
        *,
        shop_id: int | str | None = None,
        resource: str = "events",
    ) -> Estimate:
        """
        Estimate the requests and hours of budget an export or backfill of ``[start, end)`` takes.

        Spends one request per pixel: the first events page of its newest 60-day chunk, whose ``rel="last"``
        link (or else how far back its events reach) gives its pages; plus the shop's pixel list for ``shop_id``.

        :param pixel_ids: a pixel id or several; ``None`` for every pixel of ``shop_id``.
        :param resource: ``events``, ``clicks`` (plus a request per click, an upper bound) or ``purchase_summary``.
        :return: the plan; its ``str()`` says it in one sentence.
        """
        from airflow_provider_prisjakt.export.readers import READERS, EventPagesReader, PixelReader

        reader = READERS.get(resource)
        if reader is None or not issubclass(reader, PixelReader):
            raise PrisjaktConfigError(f"estimate plans events, clicks or purchase_summary, not {resource!r}")
        chunks, before = self.request_chunks(start, end), self.stats.requests  # newest first
        pixels = [pixel_ids] if isinstance(pixel_ids, str) else list(pixel_ids or ())
        pixels = pixels or reader(self, chunks[-1].start, chunks[0].end).targets(None, shop_id)
        listing = self.stats.requests - before
        pages = self.iter_pages if issubclass(reader, EventPagesReader) else None  # summaries need no probe
        planned = plan(resource, pixels, chunks, pages, self.events_path, follows=getattr(reader, "follows", None))
        limit, spent = self.rate_limit.limit if self.rate_limit else None, self.stats.requests - before
        return dataclasses.replace(planned, other_requests=planned.other_requests + listing, limit=limit, spent=spent)

    def test_connection(self) -> tuple[bool, str]:
        """Check the credentials and role with one cheap authenticated request; never raises."""
        try:
            client = self.get_client()
        except PrisjaktAuthError as err:
            return False, f"Authentication failed: {err}"
        except PrisjaktError as err:
            return False, str(err)
        except Exception as err:
            return False, f"Could not reach the Prisjakt API: {type(err).__name__}: {err}"
        roles = client.get("roles") or []
        names = ", ".join(str(role) for role in roles) or "none"
        if "shop_user" not in roles:
            return False, f"Connected, but the client lacks the shop_user role needed to read data; roles: {names}"
        return True, f"Connected to {self.settings.base_url}; roles: {names}"


class PrisjaktAsyncHook(BaseHook):
    """
    The small async side of the Prisjakt API, for triggers: one budget check that never blocks the loop.

    :param prisjakt_conn_id: the connection to use.
    """

    conn_name_attr = "prisjakt_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Prisjakt (async)"

    def __init__(self, prisjakt_conn_id: str = DEFAULT_CONN_ID) -> None:
        super().__init__()
        self.prisjakt_conn_id = prisjakt_conn_id

    async def get_settings(self) -> ConnectionSettings:
        """Read the connection with Airflow's async-safe accessor and validate it."""
        from airflow.providers.common.compat.connection import get_async_connection

        return connection_settings(await get_async_connection(self.prisjakt_conn_id, self), self.prisjakt_conn_id)

    async def get_rate_limit_status(self) -> RateLimitStatus | None:
        """
        Spend one request (``GET /clients/{client_id}``) to learn the client's current budget.

        Transient failures are retried as :class:`~airflow_provider_prisjakt.client.retry.RetryPolicy`
        says, by the same decisions as every sync request (a 5xx's ``Retry-After`` is waited up to
        the connection's ``max_inline_wait``). A 429 is an answer here, not an error: its headers
        tell when the budget returns.

        :return: the status, or ``None`` when the API sent no rate-limit headers.
        :raises PrisjaktAPIError: when the API refuses the request, or retries run out.
        """
        settings = await self.get_settings()
        # Never wait inline for the budget: the trigger waits for the reset itself.
        budget = RequestBudget(reset_header=settings.reset_header, max_inline_wait=0.0)
        async with AsyncTransport.connect(settings, budget, log=self.log) as transport:
            # A 429 raises, but its headers, which the budget read, are the answer.
            with contextlib.suppress(PrisjaktRateLimitError):
                await transport.send("GET", client_path(settings.client_id))
        return budget.status
