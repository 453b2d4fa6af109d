"""
The one place requests go out: a sync loop (:class:`Transport`) and its async twin (:class:`AsyncTransport`).

Each loop is a few lines: ask the :class:`~airflow_provider_prisjakt.client.cycle.RequestCycle`
whether to wait, send, hand it what came back, wait if it says so. Every decision lives in the
cycle, so both loops follow one retry policy and one request budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from airflow_provider_prisjakt import __version__
from airflow_provider_prisjakt.api.pagination import PaginationError, describe_errors, extract_page, next_page_url
from airflow_provider_prisjakt.client.auth import AsyncPrisjaktAuth
from airflow_provider_prisjakt.client.cycle import Call, Received, RequestCycle
from airflow_provider_prisjakt.exceptions import PrisjaktPaginationError

if TYPE_CHECKING:
    import aiohttp

    from airflow_provider_prisjakt.client.budget import RequestBudget
    from airflow_provider_prisjakt.client.cycle import Log, Step
    from airflow_provider_prisjakt.hooks.connection import ConnectionSettings

#: ``requests`` errors that mean "no (complete) answer": worth another try.
TRANSIENT_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def user_agent() -> str:
    """Return the User-Agent naming this provider, Airflow and requests versions."""
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover
        airflow_version = "unknown"
    return f"airflow-provider-prisjakt/{__version__} apache-airflow/{airflow_version} python-requests/{requests.__version__}"


def open_session(auth: requests.auth.AuthBase) -> requests.Session:
    """Return a pooled session with the provider's User-Agent and ``auth``; it retries nothing itself."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent()
    session.headers["Accept"] = "application/json, application/problem+json;q=0.9"
    session.auth = auth
    return session


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


@dataclass(frozen=True)
class Reply:
    """A successful response and its JSON body, decoded once (``None`` unless JSON was expected)."""

    response: requests.Response
    body: Any


class Transport:
    """
    Sends API requests over a ``requests`` session: pacing, retries, redirects and error mapping.

    :param session: the session, with the auth and User-Agent set.
    :param cycle: the decisions to follow.
    :param timeout: connect and read timeout of each try, in seconds.
    :param sleep: how to wait (tests pass a fake clock's).
    """

    def __init__(
        self,
        session: requests.Session,
        cycle: RequestCycle,
        *,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = session
        self.cycle = cycle
        self.timeout = timeout
        self.sleep = sleep

    def send(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        expect_json: bool = True,
    ) -> Reply:
        """
        Send one request and decode its JSON body once.

        Retries follow the cycle's :class:`~airflow_provider_prisjakt.client.retry.RetryPolicy`;
        rate-limit waits, its :class:`~airflow_provider_prisjakt.client.budget.RequestBudget`.

        :param method: HTTP method.
        :param path_or_url: a path below the base URL, or an absolute URL on the same origin.
        :param params: query parameters.
        :param json_body: a JSON request body.
        :param expect_json: whether a 2xx body must be JSON (an invalid one is retried as truncated).
        :raises PrisjaktAPIError: (a subclass) when the API refuses the request or retries run out.
        """
        call = Call(method, self.cycle.url_for(path_or_url), params, json_body, expect_json)
        while True:
            self._wait(self.cycle.before_sending(call))
            try:
                response = self.session.request(
                    call.method,
                    call.url,
                    params=call.params,
                    json=call.json_body,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except TRANSIENT_EXCEPTIONS as err:
                step = self.cycle.after_transport_error(call, err)
            else:
                received = Received(response.status_code, response.headers, response.content, response.reason)
                step = self.cycle.after_response(call, received)
                if step.done:
                    return Reply(response, step.body)
            self._wait(step)

    def _wait(self, step: Step) -> None:
        delay = self.cycle.waiting(step)
        if delay:
            self.sleep(delay)

    def pages(
        self, path_or_url: str, params: Mapping[str, Any] | None = None, *, records_key: str | None = None
    ) -> Iterator[Page]:
        """
        Yield the pages of a list, following ``rel="next"`` Link headers as given.

        :param path_or_url: the first page: a path, or a next-page URL to resume from.
        :param params: query parameters of the first page only; later pages use the next URL as is.
        :param records_key: the member holding the list when the body is an object, if not guessable.
        :raises PrisjaktPaginationError: on a foreign, repeated or malformed next link, or a body
            holding no list.
        """
        url: str | None = path_or_url
        seen: set[str] = set()
        number = 0
        errors_logged = False
        while url is not None:
            reply = self.send("GET", url, params=params)
            number += 1
            requested = reply.response.url
            seen.add(requested)
            try:
                records, errors = extract_page(reply.body, records_key)
                next_url = next_page_url(reply.response.headers.get("Link"), requested, self.cycle.base_url, seen)
            except PaginationError as err:
                raise PrisjaktPaginationError(f"{err} (page {number} of {urlsplit(requested).path})") from None
            if errors and not errors_logged:
                self.cycle.log.warning(
                    "The API sent errors with %s: %s", urlsplit(requested).path, describe_errors(errors)
                )
                errors_logged = True
            yield Page(records=records, url=requested, next_url=next_url, number=number)
            # Let this page go before the next one is fetched. Held while the next is decoded, it
            # would double the live objects and push both into the collector's oldest generation.
            del reply, records
            url, params = next_url, None


class AsyncTransport:
    """
    The async twin of :class:`Transport`, over an ``aiohttp`` session: the same cycle, never blocking.

    :param session: the session, with the timeout and User-Agent set.
    :param cycle: the decisions to follow.
    :param auth: adds the credentials to each try.
    :param sleep: how to wait (tests pass a fake one).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        cycle: RequestCycle,
        auth: AsyncPrisjaktAuth,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.session = session
        self.cycle = cycle
        self.auth = auth
        self.sleep = sleep

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, settings: ConnectionSettings, budget: RequestBudget, *, log: Log | None = None
    ) -> AsyncIterator[AsyncTransport]:
        """Open a session for a connection; yield the transport over it, closing the session after."""
        import aiohttp

        auth = AsyncPrisjaktAuth(settings, user_agent=user_agent())
        cycle = RequestCycle.for_connection(settings, budget, auth, log=log)
        timeout = aiohttp.ClientTimeout(total=settings.timeout)
        async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": user_agent()}) as session:
            yield cls(session, cycle, auth)

    async def send(self, method: str, path_or_url: str, *, params: Mapping[str, Any] | None = None) -> Any:
        """
        Send one request and return its decoded JSON body.

        :raises PrisjaktAPIError: (a subclass) when the API refuses the request or retries run out.
        """
        import aiohttp

        call = Call(method, self.cycle.url_for(path_or_url), params)
        while True:
            await self._wait(self.cycle.before_sending(call))
            try:
                headers = await self.auth.headers_for(self.session, call.url)
                async with self.session.request(
                    call.method, call.url, params=call.params, headers=headers, allow_redirects=False
                ) as response:
                    received = Received(response.status, response.headers, await response.read(), response.reason)
            except (aiohttp.ClientError, TimeoutError) as err:
                step = self.cycle.after_transport_error(call, err)
            else:
                step = self.cycle.after_response(call, received)
                if step.done:
                    return step.body
            await self._wait(step)

    async def _wait(self, step: Step) -> None:
        delay = self.cycle.waiting(step)
        if delay:
            await self.sleep(delay)
