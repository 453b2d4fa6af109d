"""
Tasks that share one client id's rate-limit window: pure rules for pacing them together.

Without a shared store, each task infers the others from its own responses: within a window,
``X-RateLimit-Remaining`` drops by its own requests and by everybody else's
(:class:`SpendEstimate`), and each other task may have a request under way when the budget runs
out (:func:`in_flight_reserve`). With a shared store, the tasks count their requests in one
:class:`SharedWindow` that follows the reset the server reports and that every response corrects
(:func:`merge_window`). No I/O here: the budget and the store feed these rules statuses.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.ratelimit import RateLimitStatus

#: Resets reported this close together name the same window: network delays move a reset given
#: as a duration by milliseconds, while the next window's reset is a whole window later.
SAME_WINDOW_SECONDS = 1.0
#: How many requests' worth of evidence the last window's estimate of the spenders weighs in a new
#: window: the same tasks are likely still at work, but a few responses outweigh it.
PRIOR_WEIGHT = 2.0
#: The margin on the estimated number of other tasks, for the reserve of requests in flight: an
#: estimate on the low side risks a 429, one on the high side leaves a request or two unused.
IN_FLIGHT_MARGIN = 1.25
#: How many of its latest requests a task looks back over to notice tasks that joined the window late.
RECENT_REQUESTS = 5


def epoch_ms(moment: datetime) -> int:
    """Return ``moment`` (timezone-aware) as whole milliseconds since the epoch."""
    return round(moment.timestamp() * 1000)


def starts_new_window(known: RateLimitStatus | None, seen: RateLimitStatus) -> bool:
    """
    Tell whether ``seen`` reports a later window than ``known``: its reset is a window later or, where
    either reset is unknown, its budget came back.

    :param known: the status reported before, if any.
    :param seen: the status just reported.
    """
    if known is None:
        return True
    if known.reset_at is not None and seen.reset_at is not None:
        return (seen.reset_at - known.reset_at).total_seconds() > SAME_WINDOW_SECONDS
    return known.remaining is not None and seen.remaining is not None and seen.remaining > known.remaining


def is_earlier_window(known: RateLimitStatus, seen: RateLimitStatus) -> bool:
    """Tell whether ``seen`` reports a window that ended before ``known``'s: a late answer."""
    if known.reset_at is None or seen.reset_at is None:
        return False
    return (known.reset_at - seen.reset_at).total_seconds() > SAME_WINDOW_SECONDS


@dataclass(frozen=True)
class SpendEstimate:
    """
    How many tasks spend this client id's window, inferred from one task's own responses.

    Within a window, ``Remaining`` drops by this task's requests and by everybody else's. The drop
    per own request says how many tasks spend at about this one's pace, itself included. Two views
    count, the larger wins: the whole window so far (steady), and the median of the last
    :data:`RECENT_REQUESTS` requests (quick to see tasks that started late, deaf to one long stall).

    :param last: the last status taken in, which tells the next one's window apart.
    :param anchor: ``Remaining`` at the task's first response in the current window.
    :param own: the task's requests counted since that response.
    :param prior: the steady estimate the window started with (the last window's), weighing
        :data:`PRIOR_WEIGHT` requests.
    :param recent: the drop per own request between each of the last responses and the one before.
    """

    last: RateLimitStatus | None = None
    anchor: int | None = None
    own: int = 0
    prior: float = 1.0
    recent: tuple[float, ...] = ()

    @property
    def steady(self) -> float:
        """The tasks spending the budget by the whole window so far, weighted with the prior (at least 1)."""
        if self.anchor is None or self.last is None or self.last.remaining is None:
            return self.prior
        drop = max(0, self.anchor - self.last.remaining)
        return max(1.0, (drop + self.prior * PRIOR_WEIGHT) / (self.own + PRIOR_WEIGHT))

    @property
    def spenders(self) -> float:
        """The tasks spending the budget at this one's pace, this one included (at least 1)."""
        lately = statistics.median(self.recent) if len(self.recent) * 2 > RECENT_REQUESTS else 0.0
        return max(self.steady, lately)

    def taking(self, status: RateLimitStatus, own: int) -> SpendEstimate:
        """
        Return the estimate after ``status``, with ``own`` requests of this task sent since the last one.

        :param status: the status of this task's latest response.
        :param own: this task's requests since the previous response.
        """
        if status.remaining is None:
            return self
        if starts_new_window(self.last, status):
            return SpendEstimate(last=status, anchor=status.remaining, prior=self.steady)
        recent = self.recent
        if own > 0 and self.last is not None and self.last.remaining is not None:
            recent = (*recent, max(0, self.last.remaining - status.remaining) / own)[-RECENT_REQUESTS:]
        return replace(self, last=status, own=self.own + own, recent=recent)


def in_flight_reserve(spenders: float) -> int:
    """
    Return the requests to keep for those the other tasks may have under way when the budget runs out.

    Each other task can have one request on its way (or decided, and waiting out its pacing delay)
    when this one sees the last of the budget; stopping that many requests early means nobody meets
    a 429. Alone (``spenders`` under 1.5), nothing is kept.

    :param spenders: the estimated tasks spending the budget, this one included.
    """
    others = spenders - 1.0
    return 0 if others < 0.5 else math.ceil(others * IN_FLIGHT_MARGIN)


@dataclass(frozen=True)
class SharedWindow:
    """
    The rate-limit window every task of a client id paces against, as a shared store holds it.

    :param status: the server's word on it: the limit and reset, and the fewest requests left that
        any task was told.
    :param tag: names the window's count of claimed requests: the reset of the window before, in
        epoch milliseconds (0 for the first). Requests sent at a reset are so counted in the next
        window before any answer has told its own reset.
    """

    status: RateLimitStatus
    tag: int = 0

    @property
    def next_tag(self) -> int:
        """The tag of the window after this one."""
        return epoch_ms(self.status.reset_at) if self.status.reset_at is not None else self.tag

    def claim_target(self, at: datetime) -> tuple[int, int | None]:
        """
        Return the tag of the window a request sent at ``at`` is counted in, and that window's limit.

        The limit is ``None`` (no cap) where the server reports no reset: such a window could never
        be told over, and its count would hold requests back for ever.
        """
        reset_at = self.status.reset_at
        if reset_at is None:
            return self.tag, None
        return (self.next_tag if at >= reset_at else self.tag), self.status.limit

    def view(self, claimed: int) -> RateLimitStatus:
        """Return the status as every task should see it: the fewer requests left of the server's word and the count."""
        limit, remaining = self.status.limit, self.status.remaining
        if limit is None:
            return self.status
        by_count = max(0, limit - claimed)
        return replace(self.status, remaining=by_count if remaining is None else min(remaining, by_count))

    def uncounted(self, seen: RateLimitStatus, claimed: int) -> int:
        """Return how many requests the server counted in this window beyond the ``claimed`` ones (from ``seen``)."""
        limit = seen.limit if seen.limit is not None else self.status.limit
        if limit is None or seen.remaining is None:
            return 0
        return max(0, limit - seen.remaining - claimed)


def merge_window(stored: SharedWindow | None, seen: RateLimitStatus) -> SharedWindow | None:
    """
    Return what a shared store should hold after a task was told ``seen``, or ``None`` to keep ``stored``.

    A later window replaces the stored one, tagged by the stored reset. In the same window the
    fewest requests left win (answers reach the tasks in any order). An answer from an earlier
    window, arriving late, changes nothing.

    :param stored: what the store holds, if anything.
    :param seen: the status of one response.
    """
    if stored is None:
        return SharedWindow(seen)
    known = stored.status
    if starts_new_window(known, seen):
        return SharedWindow(seen, tag=stored.next_tag)
    if is_earlier_window(known, seen):
        return None
    lows = [value for value in (known.remaining, seen.remaining) if value is not None]
    merged = replace(
        known, limit=seen.limit if seen.limit is not None else known.limit, remaining=min(lows) if lows else None
    )
    if merged == known:
        return None
    return SharedWindow(replace(merged, observed_at=max(known.observed_at, seen.observed_at)), stored.tag)
