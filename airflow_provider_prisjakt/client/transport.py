"""
The one place requests go out: a sync loop (:class:`Transport`) and its async twin (:class:`AsyncTransport`).

Each loop is a few lines: ask the :class:`RequestCycle` whether to wait, send, hand it what came
back, wait if it says so. The cycle judges each answer (done, redirect, token refresh, 429, failure)
and asks the request budget (:mod:`~airflow_provider_prisjakt.client.budget`, pacing and 429s) and
the retry policy (:mod:`~airflow_provider_prisjakt.client.retry`, failures) how long to wait. It
neither sends nor sleeps, so both loops follow one policy and every decision is testable without a
server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests

from airflow_provider_prisjakt.api.decoding import decode_json
from airflow_provider_prisjakt.api.pagination import (
    PaginationError,
    describe_errors,
    extract_page,
    find_rel,
    next_page_url,
    parse_link_header,
    same_origin,
)
from airflow_provider_prisjakt.api.ratelimit import parse_retry_after
from airflow_provider_prisjakt.client.auth import AsyncPrisjaktAuth, user_agent
from airflow_provider_prisjakt.client.budget import RequestStats
from airflow_provider_prisjakt.client.retry import Call, Failure, Log, Received, RetryPolicy, Step, retry_step
from airflow_provider_prisjakt.exceptions import PrisjaktPaginationError, api_error_from_response

if TYPE_CHECKING:
    import aiohttp

    from airflow_provider_prisjakt.client.auth import Credentials
    from airflow_provider_prisjakt.client.budget import RequestBudget
    from airflow_provider_prisjakt.exceptions import PrisjaktAPIError
    from airflow_provider_prisjakt.hooks.connection import ConnectionSettings

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5

module_log = logging.getLogger(__name__)

#: ``requests`` errors that mean "no (complete) answer": worth another try.
TRANSIENT_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class RequestCycle:
    """
    The decisions of a request's life, shared by the sync and the async loop.

    :param base_url: the API base URL; credentials and calls stay on its origin.
    :param policy: which failures are retried and how long to wait.
    :param budget: the request budget (pacing, 429s).
    :param auth: the auth whose token one 401 may refresh, if any.
    :param stats: the counters to update.
    :param log: where retries and waits are logged.
    """

    def __init__(
        self,
        *,
        base_url: str,
        policy: RetryPolicy,
        budget: RequestBudget,
        auth: Credentials | None = None,
        stats: RequestStats | None = None,
        log: Log | None = None,
    ) -> None:
        self.base_url = base_url
        self.policy = policy
        self.budget = budget
        self.auth = auth
        self.stats = stats if stats is not None else RequestStats()
        self.log = log or module_log

    @classmethod
    def for_connection(
        cls,
        settings: ConnectionSettings,
        budget: RequestBudget,
        auth: Credentials | None = None,
        *,
        stats: RequestStats | None = None,
        log: Log | None = None,
    ) -> RequestCycle:
        """Build the cycle a connection's settings ask for: a 5xx's ``Retry-After`` is waited up to ``max_inline_wait``."""
        policy = RetryPolicy(max_tries=settings.max_retries, retry_after_limit=settings.max_inline_wait)
        return cls(base_url=settings.base_url, policy=policy, budget=budget, auth=auth, stats=stats, log=log)

    def url_for(self, path_or_url: str) -> str:
        """
        Return the absolute URL of an API path, or check an absolute URL is on the API's origin.

        :raises PrisjaktPaginationError: for an absolute URL on another origin (it would receive the
            credentials).
        """
        if "://" in path_or_url:
            if not same_origin(path_or_url, self.base_url):
                raise PrisjaktPaginationError(
                    "Refusing to call a URL outside the configured Prisjakt API origin "
                    f"({urlsplit(path_or_url).hostname}); it would receive the client credentials"
                )
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def before_sending(self, call: Call) -> Step:
        """
        Ask the budget whether the request may go; count it.

        :return: the wait before sending (pacing, or the reset when it is close).
        :raises PrisjaktRateLimitError: when the budget is spent until a reset too far to wait for.
        """
        decision = self.budget.check_before_sending(call)
        self.stats.requests += 1
        return Step(delay=decision.delay, reason=decision.reason or "pacing requests", rate_limit=True)

    def after_response(self, call: Call, received: Received) -> Step:
        """
        Judge an answer: done, follow a redirect, wait out a 429, refresh the token, or retry.

        :raises PrisjaktAPIError: (a subclass) for a final error, or when retries run out.
        """
        self.budget.observe(received.headers)
        status = received.status
        location = received.headers.get("Location")
        if status in REDIRECT_STATUSES and location and call.redirects < MAX_REDIRECTS:
            # Credentials follow only within the origin: the auth adds none elsewhere.
            call.url, call.params = urljoin(call.url, location), None
            call.redirects += 1
            return Step()
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            self.stats.rate_limited += 1
            decision = self.budget.recover_from_429(call, received)
            reason = decision.reason or "the API answered 429 Too Many Requests"
            return Step(delay=decision.delay, reason=reason, rate_limit=True)
        if (
            status == HTTPStatus.UNAUTHORIZED
            and self.auth is not None
            and self.auth.refreshable
            and not call.token_refreshed
        ):
            call.token_refreshed = True
            self.auth.invalidate()
            return Step()
        if 200 <= status < 300:
            if not call.expect_json:
                return Step(done=True)
            try:
                return Step(done=True, body=decode_json(received.content))
            except ValueError:
                media_type = received.headers.get("Content-Type", "").split(";")[0].strip().lower()
                return self._retry(call, Failure.from_unreadable_body(media_type))
        error = api_error_from_response(
            status, received.content, reason=received.reason, method=call.method, path=call.path
        )
        retry_after = parse_retry_after(received.headers.get("Retry-After"), self.budget.clock())
        return self._retry(call, Failure.from_status(status, retry_after), error)

    def after_transport_error(self, call: Call, error: BaseException) -> Step:
        """Judge a try that got no answer (reset, refused, timed out): retry, or raise when retries run out."""
        return self._retry(call, Failure.from_transport(type(error).__name__))

    def _retry(self, call: Call, failure: Failure, error: PrisjaktAPIError | None = None) -> Step:
        return retry_step(self.policy, call, failure, error, stats=self.stats, log=self.log)

    def waiting(self, step: Step) -> float:
        """Log and count a wait the loop is about to make; return its length (0 for none)."""
        if step.delay <= 0:
            return 0.0
        if step.rate_limit:
            self.log.info("Waiting %.1f s: %s", step.delay, step.reason)
            self.stats.waits += 1
            self.stats.seconds_waited += step.delay
        return step.delay


@dataclass(frozen=True)
class Page:
    """
    One page of a list response.

    :param records: the page's records, as the API sent them.
    :param url: the URL the page was fetched from.
    :param next_url: the ``rel="next"`` URL, or ``None`` on the last page. A checkpoint stores this
        to resume without fetching the page again.
    :param number: 1-based page number within this pagination.
    :param last_url: the ``rel="last"`` URL, when the server sent one; read only to estimate how many
        pages the listing holds (:mod:`~airflow_provider_prisjakt.api.estimate`), never requested.
    """

    records: list[dict[str, Any]]
    url: str
    next_url: str | None
    number: int
    last_url: str | None = None


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
        Send one request and decode its JSON body once, waiting and retrying as the cycle decides.

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
                link = reply.response.headers.get("Link")
                next_url = next_page_url(link, requested, self.cycle.base_url, seen)
                last_url = find_rel(parse_link_header(link, requested), "last") if link else None
            except PaginationError as err:
                raise PrisjaktPaginationError(f"{err} (page {number} of {urlsplit(requested).path})") from None
            if errors and not errors_logged:
                self.cycle.log.warning(
                    "The API sent errors with %s: %s", urlsplit(requested).path, describe_errors(errors)
                )
                errors_logged = True
            yield Page(records=records, url=requested, next_url=next_url, number=number, last_url=last_url)
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
