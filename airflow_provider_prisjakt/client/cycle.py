"""
What one try of a request means, and what happens next: the decisions both transport loops share.

A :class:`RequestCycle` turns the answer to one try (or its transport error) into a :class:`Step`:
done, or try again after a wait. It asks the request budget (pacing, 429s) and the retry policy
(failures), lets the auth refresh its token once on a 401, follows redirects, decodes JSON once and
maps errors to :class:`~airflow_provider_prisjakt.exceptions.PrisjaktAPIError`. It neither sends nor
sleeps: the loops in :mod:`airflow_provider_prisjakt.client.transport` do, so the sync and the async
loop cannot drift apart, and every decision here is testable without a server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin, urlsplit

from airflow_provider_prisjakt.api.decoding import decode_json
from airflow_provider_prisjakt.api.pagination import same_origin
from airflow_provider_prisjakt.api.ratelimit import Action, PacingDecision, parse_retry_after
from airflow_provider_prisjakt.client.retry import Failure, RetryAction, RetryPolicy
from airflow_provider_prisjakt.exceptions import (
    PrisjaktAPIError,
    PrisjaktPaginationError,
    PrisjaktRateLimitError,
    PrisjaktServerError,
    api_error_from_response,
)

if TYPE_CHECKING:
    from airflow_provider_prisjakt.client.auth import Credentials
    from airflow_provider_prisjakt.client.budget import RequestBudget
    from airflow_provider_prisjakt.hooks.connection import ConnectionSettings

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5

module_log = logging.getLogger(__name__)


class Log(Protocol):
    """Where the cycle logs retries and waits: a logger, or a hook's ``log``."""

    def info(self, msg: str, /, *args: Any) -> Any:
        """Log a wait."""
        ...

    def warning(self, msg: str, /, *args: Any) -> Any:
        """Log a retry."""
        ...


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
class Received:
    """
    An answer to one try, whatever HTTP library fetched it.

    :param status: the HTTP status.
    :param headers: the response headers (a case-insensitive mapping).
    :param content: the body.
    :param reason: the reason phrase.
    """

    status: int
    headers: Mapping[str, str]
    content: bytes
    reason: str | None = None


@dataclass
class Call:
    """One API request as it goes through redirects, waits and retries."""

    method: str
    url: str
    params: Mapping[str, Any] | None = None
    json_body: Any = None
    expect_json: bool = True
    failed_tries: int = 0
    redirects: int = 0
    rate_limit_waits: int = 0
    rate_limit_probes: int = 0
    token_refreshed: bool = False

    @property
    def path(self) -> str:
        """The URL's path: what logs and errors name (never the query)."""
        return urlsplit(self.url).path


@dataclass(frozen=True)
class Step:
    """
    What a loop does next: return the decoded body, or try again after ``delay`` seconds.

    :param done: the request succeeded; ``body`` is its decoded JSON (``None`` if none was expected).
    :param delay: seconds to wait before the next try.
    :param reason: why the loop waits, for the log line of a rate-limit wait.
    :param rate_limit: the wait is for the request budget, counted in ``waits`` and ``seconds_waited``.
    """

    done: bool = False
    body: Any = None
    delay: float = 0.0
    reason: str = ""
    rate_limit: bool = False


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
        """Build the cycle a connection's settings ask for."""
        policy = RetryPolicy(max_tries=settings.max_retries)
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
        decision = self.budget.before_request()
        if decision.action is Action.DEFER:
            raise self.rate_limit_error(decision, call)
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
            return self._rate_limited(call, received)
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

    def rate_limit_error(
        self, decision: PacingDecision, call: Call, received: Received | None = None
    ) -> PrisjaktRateLimitError:
        """Build the error for a budget spent until ``decision.resume_at``, with the 429's details if any."""
        status = self.budget.status
        problem = (
            api_error_from_response(HTTPStatus.TOO_MANY_REQUESTS, received.content, reason=received.reason)
            if received is not None
            else None
        )
        return PrisjaktRateLimitError(
            detail=(problem.detail if problem else None)
            or "the request budget of this client id is spent until the window resets",
            request_id=problem.request_id if problem else None,
            reset_at=decision.resume_at,
            limit=status.limit if status else None,
            remaining=status.remaining if status else None,
            method=call.method,
            path=call.path,
            hint=decision.hint,
        )

    def _rate_limited(self, call: Call, received: Received) -> Step:
        self.stats.rate_limited += 1
        call.rate_limit_waits += 1
        decision = self.budget.after_429(received.headers, waits=call.rate_limit_waits, probes=call.rate_limit_probes)
        call.rate_limit_probes = decision.probes
        if decision.action is not Action.WAIT:
            raise self.rate_limit_error(decision, call, received)
        reason = decision.reason or "the API answered 429 Too Many Requests"
        return Step(delay=decision.delay, reason=reason, rate_limit=True)

    def _retry(self, call: Call, failure: Failure, error: PrisjaktAPIError | None = None) -> Step:
        call.failed_tries += 1
        decision = self.policy.decide(failure, call.failed_tries)
        if decision.action is RetryAction.GIVE_UP:
            if error is not None:
                raise error
            raise PrisjaktServerError(503, "Request failed", decision.reason, method=call.method, path=call.path)
        self.stats.retries += 1
        self.log.warning(
            "%s %s failed with %s; retry %s of %s in %.1f s",
            call.method,
            call.path,
            failure.description,
            call.failed_tries,
            self.policy.max_tries - 1,
            decision.delay,
        )
        return Step(delay=decision.delay)

    def waiting(self, step: Step) -> float:
        """Log and count a wait the loop is about to make; return its length (0 for none)."""
        if step.delay <= 0:
            return 0.0
        if step.rate_limit:
            self.log.info("Waiting %.1f s: %s", step.delay, step.reason)
            self.stats.waits += 1
            self.stats.seconds_waited += step.delay
        return step.delay
