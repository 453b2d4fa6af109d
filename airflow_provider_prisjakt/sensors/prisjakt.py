"""Sensor that waits until the Prisjakt client has request budget left."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowSkipException,
    BaseSensorOperator,
    conf,
)

from airflow_provider_prisjakt.connection import DEFAULT_CONN_ID
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.triggers.prisjakt import PrisjaktRateLimitTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_prisjakt.ratelimit import RateLimitStatus


class PrisjaktRateLimitSensor(BaseSensorOperator):
    """
    Wait until the Prisjakt client has at least ``min_remaining`` requests left in its window.

    Each poke spends exactly one cheap request (``GET /clients/{client_id}``). A poke never runs
    before the reported reset time, since it could not succeed and would only spend budget. With
    ``deferrable=True`` the wait happens in the triggerer and frees the worker slot.

    :param prisjakt_conn_id: the Prisjakt connection. (templated)
    :param min_remaining: the budget needed to succeed. (templated)
    :param deferrable: wait in the triggerer instead of on a worker. Defaults to the
        ``[operators] default_deferrable`` setting.
    """

    template_fields: Sequence[str] = ("prisjakt_conn_id", "min_remaining")
    ui_color = "#ff6a13"

    def __init__(
        self,
        *,
        prisjakt_conn_id: str = DEFAULT_CONN_ID,
        min_remaining: int = 100,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prisjakt_conn_id = prisjakt_conn_id
        self.min_remaining = min_remaining
        self.deferrable = deferrable
        self._not_before: datetime | None = None

    @cached_property
    def hook(self) -> PrisjaktHook:
        """The Prisjakt hook of this task."""
        return PrisjaktHook(prisjakt_conn_id=self.prisjakt_conn_id)

    def _check(self) -> RateLimitStatus | None:
        self.hook.get_client()
        return self.hook.rate_limit

    def poke(self, context: Context) -> bool:
        """Return True once the budget holds ``min_remaining`` requests; spends one request per poke."""
        now = datetime.now(UTC)
        if self._not_before is not None and now < self._not_before:
            self.log.info("Not poking before the rate-limit reset at %s", self._not_before.isoformat())
            return False
        status = self._check()
        if status is None or status.remaining is None:
            self.log.info("The API reports no rate limit; nothing to wait for")
            return True
        self.log.info("%s requests left of %s; need %s", status.remaining, status.limit, self.min_remaining)
        if status.remaining >= int(self.min_remaining):
            return True
        self._not_before = status.reset_at
        if self.mode == "reschedule" and status.reset_at is not None:
            # A rescheduled poke is a new task instance: ask Airflow to come back after the reset.
            from airflow.exceptions import AirflowRescheduleException

            raise AirflowRescheduleException(max(status.reset_at, now + timedelta(seconds=self.poke_interval)))
        return False

    def execute(self, context: Context) -> Any:
        """Poke on a worker, or defer to :class:`PrisjaktRateLimitTrigger` when ``deferrable``."""
        if not self.deferrable:
            return super().execute(context)
        status = self._check()
        if status is None or status.remaining is None or status.remaining >= int(self.min_remaining):
            self.log.info("Enough budget already; not deferring")
            return None
        self.defer(
            trigger=PrisjaktRateLimitTrigger(
                prisjakt_conn_id=self.prisjakt_conn_id,
                reset_at=status.reset_at.isoformat() if status.reset_at else None,
                min_remaining=int(self.min_remaining),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

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
