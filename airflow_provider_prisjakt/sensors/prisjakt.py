"""Sensor that waits until the Prisjakt client has request budget left."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowSkipException,
    BaseSensorOperator,
    conf,
)

from airflow_provider_prisjakt.api.ratelimit import RESET_MARGIN_SECONDS, RateLimitStatus
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktRateLimitError, PrisjaktServerError
from airflow_provider_prisjakt.hooks.connection import DEFAULT_CONN_ID
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.triggers.prisjakt import PrisjaktRateLimitTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


# By default a reset at most this many seconds away is waited for on the worker rather than deferred.
DEFAULT_MAX_INLINE_WAIT = 5.0


class PrisjaktRateLimitSensor(BaseSensorOperator):
    """
    Wait until the Prisjakt client has at least ``min_remaining`` requests left in its window.

    Each poke spends exactly one cheap request (``GET /clients/{client_id}``); with a shared budget
    (the connection extra ``budget_backend``) it reads the window every task reports there instead,
    and spends a request only when nobody has reported the current window yet. A poke never runs
    before the reported reset time, since it could not succeed and would only spend budget: after a
    poke that finds the budget spent, ``poke_interval`` stretches to the reset (within the timeout),
    in poke and in reschedule mode. With ``deferrable=True`` the wait happens in the triggerer and
    frees the worker slot. A server error (5xx, or a ``Retry-After`` longer than the sensor waits
    inline) fails only that check: the next poke, or the triggerer after ``poke_interval``, asks again.

    :param prisjakt_conn_id: the Prisjakt connection. (templated)
    :param min_remaining: the budget needed to succeed. (templated)
    :param deferrable: wait in the triggerer instead of on a worker. Defaults to the
        ``[operators] default_deferrable`` setting.
    :param max_inline_wait: in deferrable mode, a reset at most this many seconds away is waited
        for on the worker instead: a deferral that short costs more than it saves.
    """

    template_fields: Sequence[str] = ("prisjakt_conn_id", "min_remaining")
    ui_color = "#ff6a13"

    def __init__(
        self,
        *,
        prisjakt_conn_id: str = DEFAULT_CONN_ID,
        min_remaining: int = 100,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_inline_wait: float = DEFAULT_MAX_INLINE_WAIT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_inline_wait = max_inline_wait
        self.prisjakt_conn_id = prisjakt_conn_id
        self.min_remaining = min_remaining
        self.deferrable = deferrable
        self._not_before: datetime | None = None
        self._requested_poke_interval = self.poke_interval
        self._first_poke: float | None = None

    @cached_property
    def hook(self) -> PrisjaktHook:
        """The Prisjakt hook of this task; it never waits inline, so a poke is one request."""
        return PrisjaktHook(prisjakt_conn_id=self.prisjakt_conn_id, max_inline_wait=0)

    def _shared_status(self) -> RateLimitStatus | None:
        """Return the current window as the connection's shared budget holds it; ``None`` without one."""
        budget = self.hook.budget
        if not budget.shared:
            return None
        status = budget.status
        if status is None or status.remaining is None or status.reset_at is None:
            return None
        if status.reset_at <= datetime.now(UTC):
            return None  # that window is over, and nobody has reported the next one yet
        self.log.info("Read the shared budget of the client id; no request spent")
        return status

    def _check(self) -> RateLimitStatus | None:
        status = self._shared_status()
        if status is None:
            status = self._ask_the_api()
        if status is not None and status.limit is not None and int(self.min_remaining) >= status.limit:
            # The checking request itself spends one, so at most limit - 1 can ever be left.
            raise PrisjaktConfigError(
                f"min_remaining={self.min_remaining} can never be met: the client's limit is {status.limit} "
                f"requests per window; use at most {status.limit - 1}"
            )
        return status

    def _ask_the_api(self) -> RateLimitStatus | None:
        """Spend one cheap request to learn the budget (and tell the shared budget, if there is one)."""
        try:
            self.hook.get_client()
        except PrisjaktRateLimitError as err:
            # A 429 is an answer, not a failure: the budget is spent until the reset.
            return RateLimitStatus(limit=err.limit, remaining=0, reset_at=err.reset_at, observed_at=datetime.now(UTC))
        return self.hook.rate_limit

    def poke(self, context: Context) -> bool:
        """Return True once the budget holds ``min_remaining`` requests; spends at most one request per poke."""
        if self._first_poke is None:
            self._first_poke = time.monotonic()
        now = datetime.now(UTC)
        if self._not_before is not None and now < self._not_before:
            self.log.info("Not poking before the rate-limit reset at %s", self._not_before.isoformat())
            self._next_poke_after_reset()
            return False
        try:
            status = self._check()
        except PrisjaktServerError as err:
            # An API fault says nothing about the budget: this poke fails, the next one asks again.
            self.log.warning("Could not check the Prisjakt rate limit; poking again later: %s", err)
            return False
        if status is None or status.remaining is None:
            self.log.info("The API reports no rate limit; nothing to wait for")
            return True
        self.log.info("%s requests left of %s; need %s", status.remaining, status.limit, self.min_remaining)
        if status.remaining >= int(self.min_remaining):
            return True
        self._not_before = status.reset_at
        self._next_poke_after_reset()
        return False

    def _next_poke_after_reset(self) -> None:
        """
        Stretch ``poke_interval`` to the reported reset, so the next poke (or reschedule) comes after it.

        It never reaches past the sensor's timeout, and never falls below the interval the DAG asked for.
        """
        if self._not_before is None:
            return
        until_reset = (self._not_before - datetime.now(UTC)).total_seconds() + RESET_MARGIN_SECONDS
        elapsed = time.monotonic() - (self._first_poke or time.monotonic())
        self.poke_interval = max(self._requested_poke_interval, min(until_reset, self.timeout - elapsed))

    def execute(self, context: Context) -> Any:
        """Poke on a worker, or defer to :class:`PrisjaktRateLimitTrigger` when ``deferrable``."""
        if not self.deferrable:
            return super().execute(context)
        try:
            status = self._check()
            while self._is_short_wait(status):
                # Deferring for a few seconds costs more than it saves, and races the scheduler.
                wait = self._seconds_to_reset(status) + RESET_MARGIN_SECONDS
                self.log.info("The window resets in %.1f s; waiting inline instead of deferring", wait)
                time.sleep(max(0.0, wait))
                status = self._check()
        except PrisjaktServerError as err:
            self.log.warning("Could not check the Prisjakt rate limit; the triggerer asks again: %s", err)
            self._defer_until(datetime.now(UTC) + timedelta(seconds=self.poke_interval))
        if status is None or status.remaining is None or status.remaining >= int(self.min_remaining):
            self.log.info("Enough budget already; not deferring")
            return None
        self._defer_until(status.reset_at)

    def _defer_until(self, reset_at: datetime | None) -> NoReturn:
        """Defer to :class:`PrisjaktRateLimitTrigger`, which checks the budget again at ``reset_at``."""
        self.defer(
            trigger=PrisjaktRateLimitTrigger(
                prisjakt_conn_id=self.prisjakt_conn_id,
                reset_at=reset_at.isoformat() if reset_at else None,
                min_remaining=int(self.min_remaining),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    @staticmethod
    def _seconds_to_reset(status: RateLimitStatus | None) -> float:
        if status is None or status.reset_at is None:
            return float("inf")
        return (status.reset_at - datetime.now(UTC)).total_seconds()

    def _is_short_wait(self, status: RateLimitStatus | None) -> bool:
        if status is None or status.remaining is None or status.remaining >= int(self.min_remaining):
            return False
        return self._seconds_to_reset(status) <= self.max_inline_wait

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        """Check the trigger's event; raise on error so the task fails (or skips with ``soft_fail``)."""
        if event and event.get("status") == "success":
            rate_limit = event.get("rate_limit") or {}
            self.log.info("Rate limit reset: %s requests left", rate_limit.get("remaining"))
            return
        message = (event or {}).get("message", "no event received")
        if self.soft_fail:
            raise AirflowSkipException(f"Waiting for the Prisjakt rate limit failed: {message}")
        raise AirflowException(f"Waiting for the Prisjakt rate limit failed: {message}")
