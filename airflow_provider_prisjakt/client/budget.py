"""
The request budget: what the API last said about the client's rate limit, and the pacing it implies.

Every response's ``X-RateLimit-*`` headers are read into a
:class:`~airflow_provider_prisjakt.api.ratelimit.RateLimitStatus`; before each request, and after a
429, the budget asks the pure decisions of :mod:`airflow_provider_prisjakt.api.ratelimit` what to do.
This is the pacing half of a request's cycle: :meth:`RequestBudget.check_before_sending` and
:meth:`RequestBudget.recover_from_429` return the wait, or raise
:class:`~airflow_provider_prisjakt.exceptions.PrisjaktRateLimitError` when the wait is not the
worker's to make. The budget only decides; the transport (sync or async) sleeps, so one budget
serves both loops and tests inject a clock instead of waiting.

Tasks on other workers may spend the same client id's budget. Without any shared store, a budget
infers them from its own responses: the drop in ``Remaining`` beyond its own requests is theirs
(:class:`~airflow_provider_prisjakt.api.budget_sharing.SpendEstimate`). It then paces so that all
of them together fit the time to the reset, and stops early enough to leave room for the requests
they may have under way when the budget runs out. Where the status is kept is a
:class:`BudgetBackend`: this process's memory by default, or a store every task of the client id
shares and counts its requests in (a :class:`CountingBackend`, such as
:class:`~airflow_provider_prisjakt.client.budget_redis.RedisBudgetBackend`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from airflow_provider_prisjakt.api.budget_sharing import SpendEstimate, in_flight_reserve
from airflow_provider_prisjakt.api.ratelimit import (
    MAX_UNREADABLE_RESET_PROBES,
    UNREADABLE_RESET_DEFER_SECONDS,
    Action,
    PacingDecision,
    RateLimitStatus,
    decide_after_429_response,
    decide_before_request,
    parse_rate_limit_headers,
)
from airflow_provider_prisjakt.exceptions import PrisjaktRateLimitError, api_error_from_response

if TYPE_CHECKING:
    from airflow_provider_prisjakt.client.retry import Call, Received
    from airflow_provider_prisjakt.hooks.connection import ConnectionSettings

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: 429s one request may wait through inline before it gives up: a server that keeps refusing
#: after the reset it announced is not coming back soon.
MAX_RATE_LIMIT_WAITS = 50
#: The first wait between requests sent into a spent budget whose reset cannot be read; the waits
#: double from here. A worker that may not wait this long defers at once instead of probing.
FIRST_PROBE_WAIT_SECONDS = 1.0


def utc_now() -> datetime:
    """Return the current time, timezone-aware UTC: the budget's default clock."""
    return datetime.now(UTC)


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


class BudgetBackendError(Exception):
    """The shared budget store did not answer; the message names the error's type, never the store's URL."""


class BudgetBackend(Protocol):
    """Where a budget keeps the last rate-limit status it observed."""

    def load(self) -> RateLimitStatus | None:
        """Return the last status stored, or ``None``."""
        ...

    def store(self, status: RateLimitStatus | None) -> None:
        """Keep ``status``; ``None`` forgets what was known (its window is over)."""
        ...


@runtime_checkable
class CountingBackend(BudgetBackend, Protocol):
    """
    A store every task of the client id shares, which also counts the requests they send in a window.

    :meth:`~BudgetBackend.load` returns the shared view (the fewest requests left by the server's
    word or by the count); :meth:`~BudgetBackend.store` merges a response's status in, and ignores
    ``None`` (a shared window ends at its reset, for every task at once).
    """

    def claim(self, at: datetime, reserve: int) -> bool:
        """
        Count one request that goes at ``at``, in the window it falls in; refuse it when that is spent.

        :param at: when the request will be sent (after its pacing delay or the reset).
        :param reserve: requests of the window to leave unclaimed (the user's ``rate_limit_reserve``).
        :return: whether the request may go; a refused one is not counted.
        :raises BudgetBackendError: when the store does not answer.
        """
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

    Other tasks spending the same client id are inferred from the responses
    (:class:`~airflow_provider_prisjakt.api.budget_sharing.SpendEstimate`) or, with a
    :class:`CountingBackend`, counted exactly: each request is claimed in the shared
    window before it goes. A shared store that stops answering is logged once, and the budget paces
    on its own responses until it answers again.

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
        #: What this task's own responses said, whatever the backend: the fallback of a shared one.
        self.own_view = InProcessBackend()
        self.backend: BudgetBackend = backend if backend is not None else self.own_view
        self.clock = clock
        self.spend = SpendEstimate()
        self._sent_since_response = 0
        self._backend_down = False

    @classmethod
    def from_settings(cls, settings: ConnectionSettings, *, clock: Callable[[], datetime] = utc_now) -> RequestBudget:
        """
        Build the budget a connection asks for, on the shared store its ``budget_backend`` names.

        :raises PrisjaktConfigError: when ``budget_backend`` cannot be used (the ``[redis]`` extra missing).
        """
        backend: BudgetBackend | None = None
        if settings.budget_backend:
            # Imported here: it needs the optional ``limits`` package, and it builds on this module.
            from airflow_provider_prisjakt.client.budget_redis import RedisBudgetBackend

            backend = RedisBudgetBackend.for_connection(settings)
        return cls(
            reserve=settings.rate_limit_reserve,
            max_inline_wait=settings.max_inline_wait,
            reset_header=settings.reset_header,
            backend=backend,
            clock=clock,
        )

    @property
    def shared(self) -> bool:
        """Whether every task of the client id counts its requests in this budget's backend."""
        # The default backend is known not to count; a runtime protocol check costs more than a request's pacing.
        return self.backend is not self.own_view and isinstance(self.backend, CountingBackend)

    @property
    def status(self) -> RateLimitStatus | None:
        """The rate-limit status last reported (by any task, with a shared backend), or ``None``."""
        if self.shared:
            return self._ask_backend(self.backend.load, self.own_view.load())
        return self.backend.load()

    def observe(self, headers: Mapping[str, str]) -> RateLimitStatus | None:
        """
        Read a response's rate-limit headers; a response without them leaves the status as it was.

        :param headers: the response headers (names matched case-insensitively).
        :return: the status the response reported, or ``None`` when it reported none.
        """
        status = parse_rate_limit_headers(headers, self.clock(), self.reset_header)
        if status is None:
            return None
        self.own_view.store(status)
        if self.backend is not self.own_view:
            self._ask_backend(lambda: self.backend.store(status), None)
        self.spend = self.spend.taking(status, self._sent_since_response)
        self._sent_since_response = 0
        return status

    def before_request(self, *, dry_run: bool = False) -> PacingDecision:
        """
        Decide whether the next request goes now, after a pacing delay, after the reset, or not inline.

        The pacing shares the time to the reset among the tasks spending the budget, and the budget
        counts as spent once only the reserve is left: the user's, plus the requests the other tasks
        may have under way (:func:`~airflow_provider_prisjakt.api.budget_sharing.in_flight_reserve`)
        unless a shared store counts every request. A pacing delay never exceeds ``max_inline_wait``.
        A ``WAIT`` decision forgets the status: once the caller has waited for the reset, the old
        headers describe a window that is over.

        :param dry_run: only decide, for a look ahead: claim, count and forget nothing.
        """
        now = self.clock()
        if self.shared:
            decision = self._ask_backend(lambda: self._claim_in_shared_window(now, dry_run), None)
            if decision is not None:
                return decision
        status = self.own_view.load() if self.shared else self.backend.load()
        spenders = self.spend.spenders
        decision = self._decide(status, now, self.reserve + in_flight_reserve(spenders), spenders)
        if dry_run:
            return decision
        if decision.action is Action.WAIT:
            self._forget()
        if decision.action is not Action.DEFER:
            self._sent_since_response += 1
        return decision

    def _claim_in_shared_window(self, now: datetime, dry_run: bool = False) -> PacingDecision:
        """
        Decide on the shared status, and claim the request in the window it will be sent in.

        A claim is made when the decision is, before any pacing delay, so the delays spread
        requests already counted: one task's share of the time is enough, and nothing is held back
        for requests in flight.
        """
        backend: CountingBackend = self.backend  # type: ignore[assignment]  # checked by ``shared``
        status = backend.load()
        decision = self._decide(status, now, self.reserve)
        if decision.action is Action.DEFER or dry_run:
            return decision
        if not backend.claim(now + timedelta(seconds=decision.delay), self.reserve):
            # Other tasks claimed the window's last requests since the look: wait for the reset with them.
            spent = replace(status, remaining=0) if status is not None else None
            decision = self._decide(spent, now, 0)
            if decision.action is Action.DEFER:
                return decision
            # Claimed in the next window; it can be over-full only with more tasks waiting than it holds.
            backend.claim(now + timedelta(seconds=decision.delay), self.reserve)
        self._sent_since_response += 1
        return decision

    def _decide(
        self, status: RateLimitStatus | None, now: datetime, reserve: int, spenders: float = 1.0
    ) -> PacingDecision:
        decision = decide_before_request(
            status, now, reserve=reserve, max_inline_wait=self.max_inline_wait, spenders=spenders
        )
        if decision.action is Action.GO and decision.delay > self.max_inline_wait:
            return replace(decision, delay=self.max_inline_wait)
        return decision

    def _forget(self) -> None:
        """Forget the status once its window is over (a shared backend's windows end by themselves)."""
        self.own_view.store(None)
        if self.backend is not self.own_view:
            self._ask_backend(lambda: self.backend.store(None), None)

    def _ask_backend(self, ask: Callable[[], _T], fallback: _T) -> _T:
        """Return ``ask()``, or ``fallback`` when the shared store does not answer (logged once per outage)."""
        try:
            answer = ask()
        except BudgetBackendError as err:
            if not self._backend_down:
                log.warning("The shared budget backend did not answer (%s); pacing on this task's responses", err)
            self._backend_down = True
            return fallback
        if self._backend_down:
            log.info("The shared budget backend answers again")
            self._backend_down = False
        return answer

    def after_429(self, headers: Mapping[str, str], *, waits: int = 1, probes: int = 0) -> PacingDecision:
        """
        Decide how to recover from a 429, from that response's own headers (never older ones).

        A reset that cannot be read is probed with growing waits (1 s, 2 s, 4 s …); a worker that
        may not wait even the first of them (``max_inline_wait`` under
        :data:`FIRST_PROBE_WAIT_SECONDS`, as a sensor's) defers at once, as after the last probe,
        instead of sending its probes back to back.

        :param headers: the 429's headers.
        :param waits: how many 429s this request has met, this one included; beyond
            :data:`MAX_RATE_LIMIT_WAITS` the decision is ``DEFER`` whatever the wait.
        :param probes: :attr:`~airflow_provider_prisjakt.api.ratelimit.PacingDecision.probes` of the
            request's previous 429 decision (0 at first).
        """
        now = self.clock()
        decision = decide_after_429_response(
            headers,
            now,
            reset_header=self.reset_header,
            max_inline_wait=self.max_inline_wait,
            fallback_wait=FIRST_PROBE_WAIT_SECONDS,
            probes=probes,
        )
        if decision.probes and decision.action is Action.WAIT and self.max_inline_wait < FIRST_PROBE_WAIT_SECONDS:
            return replace(
                decision,
                action=Action.DEFER,
                delay=UNREADABLE_RESET_DEFER_SECONDS,
                resume_at=now + timedelta(seconds=UNREADABLE_RESET_DEFER_SECONDS),
                probes=MAX_UNREADABLE_RESET_PROBES,
            )
        if decision.action is Action.WAIT and waits > MAX_RATE_LIMIT_WAITS:
            return replace(decision, action=Action.DEFER)
        if decision.action is Action.WAIT:
            self._forget()
        return decision

    def check_before_sending(self, call: Call) -> PacingDecision:
        """
        Return the pacing decision for ``call``'s next try: go, after :attr:`PacingDecision.delay` seconds.

        :raises PrisjaktRateLimitError: when the budget is spent until a reset too far to wait for.
        """
        decision = self.before_request()
        if decision.action is Action.DEFER:
            raise self.rate_limit_error(decision, call)
        return decision

    def recover_from_429(self, call: Call, received: Received) -> PacingDecision:
        """
        Return the wait after ``call`` met a 429, judged by that 429's own headers; count it on the call.

        :raises PrisjaktRateLimitError: when the wait is too long for the worker, or the reset cannot
            be read and the probes are used up (the error's hint then names ``reset_header``).
        """
        call.rate_limit_waits += 1
        decision = self.after_429(received.headers, waits=call.rate_limit_waits, probes=call.rate_limit_probes)
        call.rate_limit_probes = decision.probes
        if decision.action is not Action.WAIT:
            raise self.rate_limit_error(decision, call, received)
        return decision

    def rate_limit_error(
        self, decision: PacingDecision, call: Call, received: Received | None = None
    ) -> PrisjaktRateLimitError:
        """Build the error for a budget spent until ``decision.resume_at``, with the 429's details if any."""
        status = self.status
        problem = (
            api_error_from_response(
                HTTPStatus.TOO_MANY_REQUESTS,
                received.content,
                reason=received.reason,
                method=call.method,
                path=call.path,
            )
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
