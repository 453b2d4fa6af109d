"""
The request budget: what the API last said about the client's rate limit, and the pacing it implies.

Every response's ``X-RateLimit-*`` headers are read into a
:class:`~airflow_provider_prisjakt.api.ratelimit.RateLimitStatus`; before each request, and after a
429, the budget asks the pure decisions of :mod:`airflow_provider_prisjakt.api.ratelimit` what to do.
The budget only decides; the transport (sync or async) sleeps, so one budget serves both loops and
tests inject a clock instead of waiting.

Where the status is kept is a :class:`BudgetBackend`: this process's memory by default. A store
shared by every task of a client id plugs in here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from airflow_provider_prisjakt.api.ratelimit import (
    Action,
    PacingDecision,
    RateLimitStatus,
    decide_after_429_response,
    decide_before_request,
    parse_rate_limit_headers,
)

if TYPE_CHECKING:
    from airflow_provider_prisjakt.hooks.connection import ConnectionSettings

log = logging.getLogger(__name__)

#: 429s one request may wait through inline before it gives up: a server that keeps refusing
#: after the reset it announced is not coming back soon.
MAX_RATE_LIMIT_WAITS = 50


def utc_now() -> datetime:
    """Return the current time, timezone-aware UTC: the budget's default clock."""
    return datetime.now(UTC)


class BudgetBackend(Protocol):
    """Where a budget keeps the last rate-limit status it observed."""

    def load(self) -> RateLimitStatus | None:
        """Return the last status stored, or ``None``."""
        ...

    def store(self, status: RateLimitStatus | None) -> None:
        """Keep ``status``; ``None`` forgets what was known (its window is over)."""
        ...


class InProcessBackend:
    """The default backend: the status lives in this process, seen by this hook's requests only."""

    def __init__(self) -> None:
        self._status: RateLimitStatus | None = None

    def load(self) -> RateLimitStatus | None:
        """Return the last status stored, or ``None``."""
        return self._status

    def store(self, status: RateLimitStatus | None) -> None:
        """Keep ``status``; ``None`` forgets what was known."""
        self._status = status


class RequestBudget:
    """
    Decides when the next request may go, from the rate-limit headers of the responses so far.

    :param reserve: requests per window to leave unused for other users of the client id.
    :param max_inline_wait: the longest wait, in seconds, worth holding a worker for; a longer one
        is a ``DEFER`` decision.
    :param reset_header: how ``X-RateLimit-Reset`` is read (see
        :func:`~airflow_provider_prisjakt.api.ratelimit.parse_reset`).
    :param backend: where the status is kept; this process's memory by default.
    :param clock: returns the current time, timezone-aware UTC.
    """

    def __init__(
        self,
        *,
        reserve: int = 0,
        max_inline_wait: float = 60.0,
        reset_header: str = "auto",
        backend: BudgetBackend | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.reserve = reserve
        self.max_inline_wait = max_inline_wait
        self.reset_header = reset_header
        self.backend: BudgetBackend = backend if backend is not None else InProcessBackend()
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: ConnectionSettings, *, clock: Callable[[], datetime] = utc_now) -> RequestBudget:
        """Build the budget a connection asks for."""
        if settings.budget_backend:
            log.warning(
                "The connection's budget_backend is not supported yet; this hook paces on its own responses only"
            )
        return cls(
            reserve=settings.rate_limit_reserve,
            max_inline_wait=settings.max_inline_wait,
            reset_header=settings.reset_header,
            clock=clock,
        )

    @property
    def status(self) -> RateLimitStatus | None:
        """The rate-limit status the last response reported, or ``None`` when nothing is known."""
        return self.backend.load()

    def observe(self, headers: Mapping[str, str]) -> RateLimitStatus | None:
        """
        Read a response's rate-limit headers; a response without them leaves the status as it was.

        :param headers: the response headers (names matched case-insensitively).
        :return: the status the response reported, or ``None`` when it reported none.
        """
        status = parse_rate_limit_headers(headers, self.clock(), self.reset_header)
        if status is not None:
            self.backend.store(status)
        return status

    def before_request(self) -> PacingDecision:
        """
        Decide whether the next request goes now, after a pacing delay, after the reset, or not inline.

        A pacing delay never exceeds ``max_inline_wait``. A ``WAIT`` decision forgets the status:
        once the caller has waited for the reset, the old headers describe a window that is over.
        """
        decision = decide_before_request(
            self.status, self.clock(), reserve=self.reserve, max_inline_wait=self.max_inline_wait
        )
        if decision.action is Action.WAIT:
            self.backend.store(None)
        elif decision.action is Action.GO and decision.delay > self.max_inline_wait:
            return replace(decision, delay=self.max_inline_wait)
        return decision

    def after_429(self, headers: Mapping[str, str], *, waits: int = 1, probes: int = 0) -> PacingDecision:
        """
        Decide how to recover from a 429, from that response's own headers (never older ones).

        :param headers: the 429's headers.
        :param waits: how many 429s this request has met, this one included; beyond
            :data:`MAX_RATE_LIMIT_WAITS` the decision is ``DEFER`` whatever the wait.
        :param probes: :attr:`~airflow_provider_prisjakt.api.ratelimit.PacingDecision.probes` of the
            request's previous 429 decision (0 at first).
        """
        decision = decide_after_429_response(
            headers,
            self.clock(),
            reset_header=self.reset_header,
            max_inline_wait=self.max_inline_wait,
            probes=probes,
        )
        if decision.action is Action.WAIT and waits > MAX_RATE_LIMIT_WAITS:
            return replace(decision, action=Action.DEFER)
        if decision.action is Action.WAIT:
            self.backend.store(None)
        return decision
