"""
The retry policy of every API request: which failures are retried, how long to wait, where the cap is.

Pure: no I/O, no clock, no HTTP client. A loop describes what went wrong with one try as a
:class:`Failure` and acts on the :class:`RetryDecision` that :meth:`RetryPolicy.decide` returns, the
way it acts on :func:`~airflow_provider_prisjakt.api.ratelimit.decide_before_request`. The sync and
the async transport share this one policy.

429s are not failures here: they are the request budget's business
(:mod:`airflow_provider_prisjakt.client.budget`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

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
    """

    action: RetryAction
    delay: float = 0.0
    final: bool = False
    reason: str = ""


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
            )
        return RetryDecision(RetryAction.RETRY, delay=max(self.backoff(tries), hint), reason=failure.description)
