"""Hook for the Prisjakt Click and Conversion API."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

import requests
from airflow.providers.common.compat.sdk import BaseHook, mask_secret
from requests.adapters import HTTPAdapter

from airflow_provider_prisjakt import __version__
from airflow_provider_prisjakt.api.decoding import decode_json
from airflow_provider_prisjakt.api.pagination import (
    PaginationError,
    RecentKeys,
    extract_records,
    next_page_url,
    same_origin,
)
from airflow_provider_prisjakt.api.ratelimit import (
    Action,
    PacingDecision,
    RateLimitStatus,
    decide_after_429,
    decide_before_request,
    parse_rate_limit_headers,
    parse_retry_after,
)
from airflow_provider_prisjakt.api.windows import WindowError, format_api_time, split_window, to_utc
from airflow_provider_prisjakt.exceptions import (
    PrisjaktAPIError,
    PrisjaktAuthError,
    PrisjaktConfigError,
    PrisjaktError,
    PrisjaktPaginationError,
    PrisjaktRateLimitError,
    PrisjaktServerError,
    api_error_from_response,
)
from airflow_provider_prisjakt.hooks.connection import (
    CONN_TYPE,
    CONNECTION_EXTRA_FIELDS,
    DEFAULT_CONN_ID,
    UI_FIELD_BEHAVIOUR,
    ConnectionSettings,
    ConnectionSettingsError,
    settings_from_connection,
)

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.windows import TimeLike

TRANSIENT_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
MAX_RATE_LIMIT_WAITS = 50
DEDUP_MEMORY = 50_000
TOKEN_EXPIRY_MARGIN_SECONDS = 60.0


def backoff_seconds(attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """
    Return how long to wait before retry ``attempt`` (1-based) of a transient failure.

    Capped exponential backoff with full jitter between half and all of the step:
    0.5 s, 1 s, 2 s, … up to 30 s. A ``Retry-After`` hint longer than that wins.
    """
    step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    wait = step * (0.5 + 0.5 * (rng or random).random())
    return max(wait, retry_after or 0.0)


def _is_transient_status(status: int) -> bool:
    """5xx responses and 408 are worth retrying; 400/401/403/404 never are."""
    return status >= 500 or status == 408


def _unreadable_body(response: requests.Response) -> str:
    """Describe a 2xx body that is not valid JSON: a truncated one, or a page from something else."""
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type and "json" not in media_type:
        return f"a {media_type} body where JSON was expected (a proxy page, or the wrong host?)"
    return "a truncated or invalid JSON body"


@dataclass
class RequestStats:
    """Counters of one hook's traffic, for operator summaries and logs."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    waits: int = 0
    seconds_waited: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the counters as a JSON-safe dict."""
        data = asdict(self)
        data["seconds_waited"] = round(self.seconds_waited, 3)
        return data


@dataclass(frozen=True)
class Page:
    """
    One page of a list response.

    :param records: the page's records, as the API sent them.
    :param url: the URL the page was fetched from.
    :param next_url: the ``rel="next"`` URL, or ``None`` on the last page. A checkpoint stores this
        to resume without fetching the page again.
    :param number: 1-based page number within this pagination.
    """

    records: list[dict[str, Any]]
    url: str
    next_url: str | None
    number: int


@dataclass
class _Token:
    value: str
    expires_at: float


def user_agent() -> str:
    """Return the User-Agent naming this provider, Airflow and requests versions."""
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover
        airflow_version = "unknown"
    return f"airflow-provider-prisjakt/{__version__} apache-airflow/{airflow_version} python-requests/{requests.__version__}"


def credential_headers(settings: ConnectionSettings, bearer_token: str | None = None) -> dict[str, str]:
    """Return the headers that authenticate a request: a bearer token, or client-id and client-secret."""
    if settings.auth_type == "oauth2":
        if bearer_token is None:
            raise PrisjaktConfigError("auth_type is oauth2 but no token was obtained")
        return {"Authorization": f"Bearer {bearer_token}"}
    return {"client-id": settings.client_id, "client-secret": settings.client_secret}


def token_request_form(settings: ConnectionSettings) -> dict[str, str]:
    """Return the OAuth2 client-credentials form sent to the token URL."""
    return {
        "grant_type": "client_credentials",
        "client_id": settings.client_id,
        "client_secret": settings.client_secret,
    }


def parse_token_response(status: int, content: bytes, reason: str | None, token_url: str) -> tuple[str, float]:
    """
    Read an OAuth2 token response; return the access token and its lifetime in seconds.

    :raises PrisjaktAPIError: when the token endpoint refused or answered something unreadable.
    """
    if status != 200:
        raise api_error_from_response(status, content, reason=reason, method="POST", path=urlsplit(token_url).path)
    try:
        payload = decode_json(content)
        token = str(payload["access_token"])
        expires_in = float(payload.get("expires_in") or 3600)
    except (ValueError, KeyError, TypeError):
        raise PrisjaktServerError(
            status, "Unreadable token response", "the token endpoint did not return an access_token"
        ) from None
    mask_secret(token)
    return token, expires_in


def connection_settings(conn: Any, conn_id: str, overrides: Mapping[str, Any] | None = None) -> ConnectionSettings:
    """
    Validate an Airflow connection object and return its settings; masks the secret in logs.

    :raises PrisjaktConfigError: naming the connection and the field at fault.
    """
    try:
        settings = settings_from_connection(
            host=conn.host,
            schema=conn.schema,
            port=conn.port,
            login=conn.login,
            password=conn.password,
            extra=conn.extra_dejson,
            overrides=overrides,
        )
    except ConnectionSettingsError as err:
        raise PrisjaktConfigError(f"Connection {conn_id!r}: {err}") from None
    mask_secret(settings.client_secret)
    return settings


class _PrisjaktAuth(requests.auth.AuthBase):
    """Adds credentials to a request only when it goes to the configured API origin."""

    def __init__(self, hook: PrisjaktHook) -> None:
        self.hook = hook

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        settings = self.hook.settings
        if not request.url or not same_origin(request.url, settings.base_url):
            return request
        token = self.hook._bearer_token() if settings.auth_type == "oauth2" else None
        request.headers.update(credential_headers(settings, token))
        return request


class PrisjaktHook(BaseHook):
    """
    Interact with the Prisjakt Click and Conversion API.

    The hook reads a ``prisjakt`` connection (login = client id, password = client secret, host = API
    base URL) and manages authentication, retries, the rate limit and Link-header pagination.

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
        self._token: _Token | None = None
        self._rate_limit: RateLimitStatus | None = None
        self.stats = RequestStats()

    # -- connection form ---------------------------------------------------------------------------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the extra fields of the connection form, for Airflow before 3.2."""
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField
        from wtforms.validators import NumberRange, Optional

        try:
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        except ImportError:  # pragma: no cover - Airflow 3 without FAB
            BS3TextFieldWidget = None  # noqa: N806

        widgets: dict[str, Any] = {}
        for extra in CONNECTION_EXTRA_FIELDS:
            kwargs: dict[str, Any] = {
                "description": extra.description,
                "default": extra.default if extra.prefill else None,
            }
            if BS3TextFieldWidget is not None:
                kwargs["widget"] = BS3TextFieldWidget()
            if extra.kind == "integer":
                widgets[extra.name] = IntegerField(
                    lazy_gettext(extra.label), validators=[Optional(), NumberRange(min=0)], **kwargs
                )
            else:
                widgets[extra.name] = StringField(lazy_gettext(extra.label), validators=[Optional()], **kwargs)
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return relabeling, placeholders and hidden fields of the connection form."""
        return {
            key: (value.copy() if isinstance(value, (dict, list)) else value)
            for key, value in UI_FIELD_BEHAVIOUR.items()
        }

    # -- settings and session ----------------------------------------------------------------------

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The validated settings of the connection, read on first use (never at DAG parse time)."""
        return connection_settings(self.get_connection(self.prisjakt_conn_id), self.prisjakt_conn_id, self._overrides)

    @property
    def base_url(self) -> str:
        """The API base URL of the connection."""
        return self.settings.base_url

    @property
    def rate_limit(self) -> RateLimitStatus | None:
        """The rate-limit status the last response reported, or ``None`` before any response."""
        return self._rate_limit

    def get_conn(self) -> requests.Session:
        """Return the hook's pooled session, built on first use: auth, user agent and no redirects."""
        if self._session is None:
            settings = self.settings
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers["User-Agent"] = user_agent()
            session.headers["Accept"] = "application/json, application/problem+json;q=0.9"
            session.auth = _PrisjaktAuth(self)
            self.log.debug("Prisjakt session for %s (auth %s)", settings.base_url, settings.auth_type)
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the pooled session."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- OAuth2 ------------------------------------------------------------------------------------

    def _bearer_token(self) -> str:
        if self._token is None or self._token.expires_at <= time.monotonic():
            self._token = self._fetch_token()
        return self._token.value

    def _fetch_token(self) -> _Token:
        settings = self.settings
        try:
            response = requests.post(
                settings.token_url,
                data=token_request_form(settings),
                headers={"User-Agent": user_agent(), "Accept": "application/json"},
                timeout=settings.timeout,
                allow_redirects=False,
            )
        except TRANSIENT_EXCEPTIONS as err:
            raise PrisjaktServerError(
                503, "Token endpoint unreachable", f"{type(err).__name__} calling the OAuth2 token URL"
            ) from None
        token, expires_in = parse_token_response(
            response.status_code, response.content, response.reason, settings.token_url
        )
        self.log.info("Obtained a Prisjakt OAuth2 token valid for %s s", int(expires_in))
        return _Token(token, time.monotonic() + max(0.0, expires_in - TOKEN_EXPIRY_MARGIN_SECONDS))

    # -- requests ----------------------------------------------------------------------------------

    def url_for(self, path_or_url: str) -> str:
        """
        Return the absolute URL of an API path, or check an absolute URL is on the API's origin.

        :raises PrisjaktPaginationError: for an absolute URL on another origin (it would receive the
            credentials).
        """
        base = self.settings.base_url
        if "://" in path_or_url:
            if not same_origin(path_or_url, base):
                raise PrisjaktPaginationError(
                    "Refusing to call a URL outside the configured Prisjakt API origin "
                    f"({urlsplit(path_or_url).hostname}); it would receive the client credentials"
                )
            return path_or_url
        return f"{base}/{path_or_url.lstrip('/')}"

    def _sleep(self, seconds: float, reason: str) -> None:
        if seconds <= 0:
            return
        self.log.info("Waiting %.1f s: %s", seconds, reason)
        self.stats.waits += 1
        self.stats.seconds_waited += seconds
        time.sleep(seconds)

    def _observe(self, response: requests.Response) -> None:
        status = parse_rate_limit_headers(response.headers, datetime.now(UTC), self.settings.reset_header)
        if status is not None:
            self._rate_limit = status

    def _rate_limit_error(
        self, decision: PacingDecision, response: requests.Response | None, method: str, path: str
    ) -> PrisjaktRateLimitError:
        status = self._rate_limit
        problem = (
            api_error_from_response(429, response.content, reason=response.reason) if response is not None else None
        )
        return PrisjaktRateLimitError(
            detail=(problem.detail if problem else None)
            or "the request budget of this client id is spent until the window resets",
            request_id=problem.request_id if problem else None,
            reset_at=decision.resume_at,
            limit=status.limit if status else None,
            remaining=status.remaining if status else None,
            method=method,
            path=path,
        )

    def _pace(self, method: str, path: str) -> None:
        settings = self.settings
        decision = decide_before_request(
            self._rate_limit, datetime.now(UTC), settings.rate_limit_reserve, settings.max_inline_wait
        )
        if decision.action is Action.DEFER:
            raise self._rate_limit_error(decision, None, method, path)
        if decision.action is Action.WAIT:
            self._sleep(decision.delay, "rate-limit budget spent until the window resets")
            self._rate_limit = None
        elif decision.delay > 0:
            self._sleep(min(decision.delay, settings.max_inline_wait), "pacing requests over the rate-limit window")

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        expect_json: bool = True,
    ) -> requests.Response:
        """
        Send one API request with pacing, retries and error mapping; see :meth:`send` for the policy.

        :return: the successful response.
        """
        return self.send(method, path_or_url, params=params, json_body=json_body, expect_json=expect_json)[0]

    def send(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        expect_json: bool = True,
    ) -> tuple[requests.Response, Any]:
        """
        Send one API request with pacing, retries and error mapping, and decode its JSON body once.

        Retry policy: 5xx, 408, connection resets, timeouts and (when ``expect_json``) bodies that
        are not valid JSON are retried with capped, jittered exponential backoff (:func:`backoff_seconds`),
        honouring ``Retry-After``, for at most ``max_retries`` tries in all. 429s wait for the reset
        (inline up to ``max_inline_wait``, otherwise :class:`PrisjaktRateLimitError`). 400, 401, 403 and
        404 are never retried. Redirects are followed only within the API's origin.

        :param method: HTTP method.
        :param path_or_url: a path below the base URL, or an absolute URL on the same origin.
        :param params: query parameters.
        :param json_body: a JSON request body.
        :param expect_json: whether a 2xx body must be JSON (an invalid one is retried as truncated).
        :return: the successful response and its decoded body (``None`` unless ``expect_json``).
        :raises PrisjaktAPIError: (a subclass) when the API refuses the request or retries run out.
        """
        settings = self.settings
        session = self.get_conn()
        url = self.url_for(path_or_url)
        path = urlsplit(url).path
        attempt = 0
        rate_limit_waits = 0
        refreshed_token = False
        redirects = 0
        while True:
            self._pace(method, path)
            self.stats.requests += 1
            retry_after: float | None = None
            last_error: PrisjaktAPIError | None = None
            try:
                response = session.request(
                    method, url, params=params, json=json_body, timeout=settings.timeout, allow_redirects=False
                )
            except TRANSIENT_EXCEPTIONS as err:
                failure = type(err).__name__
            else:
                self._observe(response)
                status = response.status_code
                if status in REDIRECT_STATUSES and response.headers.get("Location") and redirects < MAX_REDIRECTS:
                    # Credentials follow only within the origin: _PrisjaktAuth drops them elsewhere.
                    redirects += 1
                    url, params = urljoin(url, response.headers["Location"]), None
                    continue
                if status == 429:
                    self.stats.rate_limited += 1
                    rate_limit_waits += 1
                    now = datetime.now(UTC)
                    decision = decide_after_429(
                        self._rate_limit,
                        parse_retry_after(response.headers.get("Retry-After"), now),
                        now,
                        settings.max_inline_wait,
                    )
                    if decision.action is Action.DEFER or rate_limit_waits > MAX_RATE_LIMIT_WAITS:
                        raise self._rate_limit_error(decision, response, method, path)
                    self._sleep(decision.delay, "the API answered 429 Too Many Requests")
                    self._rate_limit = None
                    continue
                if status == 401 and settings.auth_type == "oauth2" and not refreshed_token:
                    refreshed_token = True
                    self._token = None
                    continue
                if 200 <= status < 300:
                    if not expect_json:
                        return response, None
                    try:
                        return response, decode_json(response.content)
                    except ValueError:
                        failure = _unreadable_body(response)
                else:
                    last_error = api_error_from_response(
                        status, response.content, reason=response.reason, method=method, path=path
                    )
                    if not _is_transient_status(status):
                        raise last_error
                    failure = f"HTTP {status}"
                    retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
            attempt += 1
            if attempt >= settings.max_retries:
                if last_error is not None:
                    raise last_error
                raise PrisjaktServerError(
                    503, "Request failed", f"{failure} on each of {attempt} tries", method=method, path=path
                )
            self.stats.retries += 1
            wait = backoff_seconds(attempt, retry_after)
            self.log.warning(
                "%s %s failed with %s; retry %s of %s in %.1f s",
                method,
                path,
                failure,
                attempt,
                settings.max_retries - 1,
                wait,
            )
            time.sleep(wait)

    def get_json(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a path and return the decoded JSON body."""
        return self.send("GET", path_or_url, params=params)[1]

    # -- pagination --------------------------------------------------------------------------------

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
        settings = self.settings
        url: str | None
        if start_url is not None:
            url = self.url_for(start_url)
            query: Mapping[str, Any] | None = None
        else:
            url = self.url_for(path)
            query = dict(params or {})
            if settings.page_size:
                query = {**query, settings.page_size_param: settings.page_size}
        seen: set[str] = set()
        number = 0
        while url is not None:
            response, body = self.send("GET", url, params=query)
            number += 1
            requested = response.url or url
            seen.add(requested)
            try:
                records = extract_records(body, records_key)
                next_url = next_page_url(response.headers.get("Link"), requested, settings.base_url, seen)
            except PaginationError as err:
                raise PrisjaktPaginationError(f"{err} (page {number} of {urlsplit(requested).path})") from None
            yield Page(records=records, url=requested, next_url=next_url, number=number)
            # Let this page go before the next one is fetched. Held while the next is decoded, it
            # would double the live objects and push both into the collector's oldest generation.
            del response, body, records
            url, query = next_url, None

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, *, records_key: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield every record of a list endpoint across all pages, dropping records repeated by shifting pages."""
        dedup = RecentKeys(DEDUP_MEMORY)
        for page in self.iter_pages(path, params, records_key=records_key):
            yield from dedup.keep_new(page.records)
            del page  # released before the next page is fetched; see iter_pages

    # -- resources ---------------------------------------------------------------------------------

    @staticmethod
    def _segment(value: Any, name: str) -> str:
        text = str(value).strip()
        if not text:
            raise PrisjaktConfigError(f"{name} must not be empty")
        return quote(text, safe="")

    def get_client(self, client_id: str | None = None) -> dict[str, Any]:
        """Return the API client (``id`` and ``roles``); by default the connection's own client."""
        return self.get_json(f"clients/{self._segment(client_id or self.settings.client_id, 'client_id')}")

    def get_pixels(self, shop_id: int | str) -> list[dict[str, Any]]:
        """Return the pixels of a shop."""
        return list(self.paginate(f"shops/{self._segment(shop_id, 'shop_id')}/pixels"))

    def events_path(self, pixel_id: str) -> str:
        """Return the path of a pixel's event list."""
        return f"pixels/{self._segment(pixel_id, 'pixel_id')}/events"

    @staticmethod
    def window_chunks(start: TimeLike, end: TimeLike) -> list[tuple[datetime, datetime]]:
        """Return ``[start, end)`` as API-sized windows (at most 60 days), newest first."""
        try:
            return split_window(to_utc(start, "start"), to_utc(end, "end"))
        except WindowError as err:
            raise PrisjaktConfigError(str(err)) from None

    @staticmethod
    def window_params(start: datetime, end: datetime) -> dict[str, str]:
        """Return the ``from``/``to`` query parameters of a window, ISO-8601 UTC."""
        return {"from": format_api_time(start), "to": format_api_time(end)}

    def iter_events(self, pixel_id: str, start: TimeLike, end: TimeLike) -> Iterator[dict[str, Any]]:
        """
        Yield every conversion event of a pixel in ``[start, end)``, newest first, each once.

        Windows longer than the API's 60 days are split into consecutive chunks.
        """
        dedup = RecentKeys(DEDUP_MEMORY)
        path = self.events_path(pixel_id)
        for chunk_start, chunk_end in self.window_chunks(start, end):
            for page in self.iter_pages(path, self.window_params(chunk_start, chunk_end)):
                yield from dedup.keep_new(page.records)
                del page  # released before the next page is fetched; see iter_pages

    def get_purchase_summary(self, pixel_id: str, start: TimeLike, end: TimeLike) -> dict[str, Any]:
        """
        Return the number and total value of purchases per currency in ``[start, end)``.

        Windows longer than 60 days are requested in chunks and added up.
        """
        chunks = self.window_chunks(start, end)
        path = f"pixels/{self._segment(pixel_id, 'pixel_id')}/purchase-summary"
        if len(chunks) == 1:
            return self.get_json(path, self.window_params(*chunks[0]))
        totals: dict[str, dict[str, Any]] = {}
        for chunk in chunks:
            summary = self.get_json(path, self.window_params(*chunk))
            for entry in summary.get("currencies", []):
                total = totals.setdefault(
                    entry["currency"], {"currency": entry["currency"], "count": 0, "total_amount": 0.0}
                )
                total["count"] += entry.get("count", 0)
                total["total_amount"] = round(total["total_amount"] + float(entry.get("total_amount", 0)), 2)
        return {
            "from": format_api_time(chunks[0][0]),
            "to": format_api_time(chunks[-1][1]),
            "currencies": [totals[currency] for currency in sorted(totals)],
        }

    def get_event(self, event_id: str) -> dict[str, Any]:
        """Return one conversion event."""
        return self.get_json(f"events/{self._segment(event_id, 'event_id')}")

    def get_click(self, click_id: str) -> dict[str, Any]:
        """Return one click."""
        return self.get_json(f"clicks/{self._segment(click_id, 'click_id')}")

    # -- connection test ---------------------------------------------------------------------------

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
        try:
            from airflow.providers.common.compat.connection import get_async_connection
        except ImportError:  # pragma: no cover - older common-compat
            from asgiref.sync import sync_to_async

            conn = await sync_to_async(self.get_connection)(self.prisjakt_conn_id)
        else:
            conn = await get_async_connection(self.prisjakt_conn_id, self)
        return connection_settings(conn, self.prisjakt_conn_id)

    async def get_rate_limit_status(self) -> RateLimitStatus | None:
        """
        Spend one request (``GET /clients/{client_id}``) to learn the client's current budget.

        Transient failures (5xx, 408, resets, timeouts) are retried like :meth:`PrisjaktHook.send`
        does, with :func:`backoff_seconds` waits, for at most ``max_retries`` tries.

        :return: the status, or ``None`` when the API sent no rate-limit headers.
        :raises PrisjaktAPIError: when the API refuses the request (a 429 is not an error here), or
            retries run out.
        """
        import asyncio

        import aiohttp

        settings = await self.get_settings()
        timeout = aiohttp.ClientTimeout(total=settings.timeout)
        url = f"{settings.base_url}/clients/{quote(settings.client_id, safe='')}"
        path = urlsplit(url).path
        attempt = 0
        async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": user_agent()}) as session:
            while True:
                retry_after: float | None = None
                last_error: PrisjaktAPIError | None = None
                try:
                    token = None
                    if settings.auth_type == "oauth2":
                        async with session.post(settings.token_url, data=token_request_form(settings)) as response:
                            token, _ = parse_token_response(
                                response.status, await response.read(), response.reason, settings.token_url
                            )
                    async with session.get(
                        url, headers=credential_headers(settings, token), allow_redirects=False
                    ) as response:
                        body = await response.read()
                        status = parse_rate_limit_headers(response.headers, datetime.now(UTC), settings.reset_header)
                        if response.status < 400 or response.status == 429:
                            return status
                        last_error = api_error_from_response(
                            response.status, body, reason=response.reason, method="GET", path=path
                        )
                        if not _is_transient_status(response.status):
                            raise last_error
                        failure = f"HTTP {response.status}"
                        retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
                except (aiohttp.ClientError, TimeoutError) as err:
                    failure = type(err).__name__
                attempt += 1
                if attempt >= settings.max_retries:
                    if last_error is not None:
                        raise last_error
                    raise PrisjaktServerError(
                        503, "Request failed", f"{failure} on each of {attempt} tries", method="GET", path=path
                    )
                wait = backoff_seconds(attempt, retry_after)
                self.log.warning("GET %s failed with %s; retry %s in %.1f s", path, failure, attempt, wait)
                await asyncio.sleep(wait)
