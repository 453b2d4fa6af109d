"""Trigger that waits in the triggerer, not on a worker, until the Prisjakt rate limit resets."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_prisjakt.exceptions import PrisjaktError
from airflow_provider_prisjakt.hooks.connection import DEFAULT_CONN_ID
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktAsyncHook

DEFAULT_JITTER_SECONDS = 2.0
DEFAULT_POLL_INTERVAL = 60.0
# When the API reports a reset that has already passed, check again this soon rather than at once;
# each further passed reset doubles the wait, up to the poll interval, so a server stuck on a past
# reset gets a handful of checks, not one a second.
MIN_RECHECK_SECONDS = 1.0


class PrisjaktRateLimitTrigger(BaseTrigger):
    """
    Sleep until the reset time (plus a small jitter), then check the budget with one async request.

    It fires once the client has at least ``min_remaining`` requests left. If the window is still
    spent, it sleeps until the newly reported reset and checks again.

    :param prisjakt_conn_id: the Prisjakt connection.
    :param reset_at: ISO-8601 time of the expected reset; ``None`` checks at once.
    :param min_remaining: the budget needed to fire.
    :param poll_interval: seconds to wait when the API reports no reset time.
    :param jitter_seconds: up to this many seconds are added to each wait, so that tasks sharing a
        client id do not all wake at the same instant.
    :param resume: opaque JSON-safe state echoed back in the event (an export's checkpoint), so the
        task resumes even where the event replaces the deferral kwargs.
    """

    def __init__(
        self,
        *,
        prisjakt_conn_id: str = DEFAULT_CONN_ID,
        reset_at: str | None = None,
        min_remaining: int = 1,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        jitter_seconds: float = DEFAULT_JITTER_SECONDS,
        resume: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.prisjakt_conn_id = prisjakt_conn_id
        self.reset_at = reset_at
        self.min_remaining = min_remaining
        self.poll_interval = poll_interval
        self.jitter_seconds = jitter_seconds
        self.resume = resume

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath and the JSON-safe kwargs that recreate this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "prisjakt_conn_id": self.prisjakt_conn_id,
                "reset_at": self.reset_at,
                "min_remaining": self.min_remaining,
                "poll_interval": self.poll_interval,
                "jitter_seconds": self.jitter_seconds,
                "resume": self.resume,
            },
        )

    def seconds_to_wait(self, reset_at: datetime | None, now: datetime) -> float:
        """Return how long to sleep before the next check: until the reset plus jitter."""
        jitter = random.uniform(0, self.jitter_seconds) if self.jitter_seconds > 0 else 0.0
        if reset_at is None:
            return jitter
        return max(0.0, (reset_at - now).total_seconds()) + jitter

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait for the reset, check the budget, and yield one event with the new status."""
        hook = PrisjaktAsyncHook(self.prisjakt_conn_id)
        reset_at = datetime.fromisoformat(self.reset_at) if self.reset_at else None
        passed_resets = 0
        while True:
            wait = self.seconds_to_wait(reset_at, datetime.now(UTC))
            self.log.info("Waiting %.1f s for the Prisjakt rate limit to reset", wait)
            await asyncio.sleep(wait)
            try:
                status = await hook.get_rate_limit_status()
            except (TimeoutError, PrisjaktError, AirflowException, OSError) as err:
                message = str(err) or type(err).__name__
                yield TriggerEvent({"status": "error", "message": message, "resume": self.resume})
                return
            if status is None or status.remaining is None or status.remaining >= self.min_remaining:
                yield TriggerEvent(
                    {
                        "status": "success",
                        "rate_limit": status.to_dict() if status else None,
                        "resume": self.resume,
                    }
                )
                return
            self.log.info(
                "Budget still at %s (need %s); checking again after the next reset",
                status.remaining,
                self.min_remaining,
            )
            reset_at = status.reset_at
            if reset_at is None:
                await asyncio.sleep(self.poll_interval)
            elif reset_at <= datetime.now(UTC):
                recheck = min(MIN_RECHECK_SECONDS * 2**passed_resets, self.poll_interval)
                passed_resets += 1
                reset_at = datetime.now(UTC) + timedelta(seconds=recheck)
