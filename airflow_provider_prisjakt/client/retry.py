"""
The retry policy of every API request: which failures are retried, how long to wait, where the cap is.

:class:`RetryPolicy` is pure: no I/O, no clock, no HTTP client. A loop describes what went wrong
with one try as a :class:`Failure` and acts on the :class:`RetryDecision` that
:meth:`RetryPolicy.decide` returns, the way it acts on
:func:`~airflow_provider_prisjakt.api.ratelimit.decide_before_request`.

Around it, the vocabulary of a request's tries that both transport loops share: the :class:`Call`
(one request and its tries so far), what a try :class:`Received`, and the :class:`Step` the loop
takes next. :func:`retry_step` is the failure half of a request's cycle: it counts and logs the
failed try, and raises the error the policy ends with.

429s are not failures here: they are the request budget's business
(:mod:`airflow_provider_prisjakt.client.budget`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_prisjakt.exceptions import PrisjaktAPIError, PrisjaktServerError

if TYPE_CHECKING:
    from airflow_provider_prisjakt.client.budget import RequestStats

#: The one client error worth another try: the server gave up waiting for the request.
REQUEST_TIMEOUT_STATUS = 408
#: Backoff before retry ``n`` is ``BACKOFF_BASE_SECONDS * 2 ** (n - 1)``, jittered, at most the cap.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
DEFAULT_MAX_TRIES = 5


class FailureKind(StrEnum):
    """What went wrong with one try of a request."""

    STATUS = "status"
    """The API answered with an error status."""
    TRANSPORT = "transport"
    """No answer: the connection was refused, reset or dropped, or it timed out."""
    UNREADABLE_BODY = "unreadable_body"
    """A 2xx answer whose body is not the JSON it should be (truncated, or a proxy's page)."""


@dataclass(frozen=True)
class Failure:
    """
    One failed try, as the retry policy needs to see it.

    :param kind: what went wrong.
    :param description: what went wrong in a few words, for logs and the final error
        (``HTTP 503``, ``ConnectionError``); never a body, header or credential.
    :param status: the HTTP status, for :attr:`FailureKind.STATUS`.
    :param retry_after: the server's ``Retry-After`` hint in seconds, if it sent one.
    """

    kind: FailureKind
    description: str
    status: int | None = None
    retry_after: float | None = None

    @classmethod
    def from_status(cls, status: int, retry_after: float | None = None) -> Failure:
        """Describe an error status."""
        return cls(FailureKind.STATUS, f"HTTP {status}", status=status, retry_after=retry_after)

    @classmethod
    def from_transport(cls, error_name: str) -> Failure:
        """Describe a try that got no answer, by the name of the transport's exception."""
        return cls(FailureKind.TRANSPORT, error_name)

    @classmethod
    def from_unreadable_body(cls, media_type: str) -> Failure:
        """Describe a 2xx body that is not valid JSON, by its media type (empty when none was sent)."""
        if media_type and "json" not in media_type:
            description = f"a {media_type} body where JSON was expected (a proxy page, or the wrong host?)"
        else:
            description = "a truncated or invalid JSON body"
        return cls(FailureKind.UNREADABLE_BODY, description)


class RetryAction(StrEnum):
    """What the loop does after a failed try."""

    RETRY = "retry"
    """Wait :attr:`RetryDecision.delay` seconds, then try again."""
    GIVE_UP = "give_up"
    """Raise: the failure is final, or the tries or the wait allowed are used up."""


@dataclass(frozen=True)
class RetryDecision:
    """
    The outcome of :meth:`RetryPolicy.decide`.

    :param action: retry, or give up.
    :param delay: seconds to wait before the next try (``RETRY`` only).
    :param final: the failure can never succeed however often it is tried (a 400, 401, 403, 404):
        the task should fail without Airflow's own retries.
    :param reason: why, in a few words, for the log line or the error.
    :param hint: what the user should know, added to the error when the loop gives up; ``None``
        when the API's own error says it all.
    """

    action: RetryAction
    delay: float = 0.0
    final: bool = False
    reason: str = ""
    hint: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """
    Capped exponential backoff with jitter, for at most ``max_tries`` tries of one request.

    Retried: 5xx and 408 answers, transport failures (resets, refused or dropped connections,
    timeouts) and 2xx bodies that are not valid JSON. Final, never retried: every other 4xx (400,
    401, 403, 404, 409, 422, …). The wait before retry ``n`` is a random share between half and all
    of ``min(cap_seconds, base_seconds * 2 ** (n - 1))`` (0.5 s, 1 s, 2 s, … 30 s), so that clients
    failing together do not retry together; a longer ``Retry-After`` wins.

    :param max_tries: tries in all, the first one included (at least 1).
    :param base_seconds: the first backoff step.
    :param cap_seconds: the longest backoff step.
    :param retry_after_limit: the longest ``Retry-After`` worth waiting for on the worker; a longer
        one gives up at once (the error stays retryable, so Airflow's task retries take over).
        ``None`` honours any hint.
    :param rng: the source of jitter; inject a seeded one for repeatable waits.
    """

    max_tries: int = DEFAULT_MAX_TRIES
    base_seconds: float = BACKOFF_BASE_SECONDS
    cap_seconds: float = BACKOFF_CAP_SECONDS
    retry_after_limit: float | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be at least 1, not {self.max_tries}")
        if self.base_seconds < 0 or self.cap_seconds < 0:
            raise ValueError("backoff seconds must not be negative")

    @staticmethod
    def is_transient(status: int) -> bool:
        """Tell whether an error status may go away on its own: 5xx, and 408."""
        return status >= 500 or status == REQUEST_TIMEOUT_STATUS

    def backoff(self, tries: int) -> float:
        """Return the jittered wait after ``tries`` failed tries (1-based)."""
        step = min(self.cap_seconds, self.base_seconds * 2 ** max(0, tries - 1))
        return step * (0.5 + 0.5 * self.rng.random())

    def decide(self, failure: Failure, tries: int) -> RetryDecision:
        """
        Decide what to do after a failed try.

        :param failure: what went wrong with the last try.
        :param tries: how many tries of this request have failed, the last one included (1-based).
        """
        if failure.kind is FailureKind.STATUS and failure.status is not None and not self.is_transient(failure.status):
            return RetryDecision(RetryAction.GIVE_UP, final=True, reason=f"{failure.description} is final")
        if tries >= self.max_tries:
            return RetryDecision(RetryAction.GIVE_UP, reason=f"{failure.description} on each of {tries} tries")
        hint = failure.retry_after or 0.0
        if self.retry_after_limit is not None and hint > self.retry_after_limit:
            return RetryDecision(
                RetryAction.GIVE_UP,
                reason=f"{failure.description} asks to retry after {hint:.0f} s, longer than the "
                f"{self.retry_after_limit:.0f} s a worker may wait",
                hint=f"The API asked to retry after {hint:.0f} s, longer than the connection's max_inline_wait "
                f"({self.retry_after_limit:.0f} s) lets a worker wait; the task's retries will try again",
            )
        return RetryDecision(RetryAction.RETRY, delay=max(self.backoff(tries), hint), reason=failure.description)


# -- a request's tries, as both transport loops see them ----------------------------------------------


class Log(Protocol):
    """Where the cycle logs retries and waits: a logger, or a hook's ``log``."""

    def info(self, msg: str, /, *args: Any) -> Any:
        """Log a wait."""
        ...

    def warning(self, msg: str, /, *args: Any) -> Any:
        """Log a retry."""
        ...


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


def retry_step(
    policy: RetryPolicy,
    call: Call,
    failure: Failure,
    error: PrisjaktAPIError | None = None,
    *,
    stats: RequestStats,
    log: Log,
) -> Step:
    """
    Count and log a failed try of ``call``; return the wait before the next, or raise when the policy gives up.

    :param policy: the retry policy.
    :param call: the request; its ``failed_tries`` grows by one.
    :param failure: what went wrong with this try.
    :param error: the API's error for this try, raised (with the policy's hint, if any) when the
        policy gives up; without one (no answer, an unreadable body) a :class:`PrisjaktServerError`
        names the failure.
    :param stats: the counters whose ``retries`` grows by one.
    :param log: where the retry is logged.
    :raises PrisjaktAPIError: (a subclass) when the failure is final or the tries or wait allowed are used up.
    """
    call.failed_tries += 1
    decision = policy.decide(failure, call.failed_tries)
    if decision.action is RetryAction.GIVE_UP:
        raise give_up_error(decision, call, error)
    stats.retries += 1
    log.warning(
        "%s %s failed with %s; retry %s of %s in %.1f s",
        call.method,
        call.path,
        failure.description,
        call.failed_tries,
        policy.max_tries - 1,
        decision.delay,
    )
    return Step(delay=decision.delay)


def give_up_error(decision: RetryDecision, call: Call, error: PrisjaktAPIError | None) -> PrisjaktAPIError:
    """Return the error a request ends with when the policy gives up: the API's own, with the policy's hint."""
    if error is None:
        return PrisjaktServerError(503, "Request failed", decision.reason, method=call.method, path=call.path)
    if not decision.hint:
        return error
    # The message is built once, from the attributes: a hint is added by building the error again.
    return type(error)(
        error.status,
        error.title,
        error.detail,
        error.request_id,
        error.field_errors,
        method=error.method,
        path=error.path,
        hint=f"{error.hint}. {decision.hint}" if error.hint else decision.hint,
    )
