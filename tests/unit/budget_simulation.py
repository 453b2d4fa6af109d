"""
Tasks sharing one client id against a simulated fixed-window API, on a simulated clock.

Each task runs the real :class:`~airflow_provider_prisjakt.client.budget.RequestBudget` decisions:
it asks before each request, sleeps what it is told, sends, and feeds the response's headers back.
The server counts requests per fixed window (a window starts at the first request after the last
one ended, as the sandbox does) and answers 429 beyond the limit. Latencies and the time a task
takes between a response and its next request are drawn from a seeded generator, so a run is
repeatable and nothing sleeps. :class:`InMemoryCountingBackend` is a shared store's rules in one
process, for tasks that count their requests together.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from airflow_provider_prisjakt.api.budget_sharing import SharedWindow, is_earlier_window, merge_window
from airflow_provider_prisjakt.api.ratelimit import Action, RateLimitStatus
from airflow_provider_prisjakt.client.budget import BudgetBackend, BudgetBackendError, RequestBudget

EPOCH = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)


@dataclass
class SimulatedServer:
    """
    Fixed windows of ``limit`` requests per ``window`` seconds; every request counts, 429s included.

    :param limit: requests per window.
    :param window: window length in seconds.
    """

    limit: int
    window: float
    start: float | None = None
    used: int = 0
    #: (arrival time, allowed) of every request, in arrival order.
    log: list[tuple[float, bool]] = field(default_factory=list)

    def hit(self, now: float) -> dict[str, str]:
        """Count a request arriving at ``now``; return the response's rate-limit headers (and whether it passed)."""
        if self.start is None or now - self.start >= self.window:
            self.start, self.used = now, 0
        self.used += 1
        allowed = self.used <= self.limit
        self.log.append((now, allowed))
        reset_ms = math.ceil((self.start + self.window - now) * 1000)
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
            "X-RateLimit-Reset": str(reset_ms),
            "status": "200" if allowed else "429",
        }

    def windows(self) -> list[tuple[int, int]]:
        """Return (allowed, refused) per window, in order."""
        counts: list[tuple[int, int]] = []
        start: float | None = None
        for at, allowed in self.log:
            if start is None or at - start >= self.window:
                start = at
                counts.append((0, 0))
            passed, refused = counts[-1]
            counts[-1] = (passed + allowed, refused + (not allowed))
        return counts


@dataclass
class Outcome:
    """What a simulation measured."""

    refused: int
    #: 429s met by a task's first request in a window it knew nothing of: no budget can avoid those.
    blind_refused: int
    windows: list[tuple[int, int]]
    elapsed: float
    deferred: int


def simulate(
    tasks: int,
    requests_per_task: int,
    *,
    limit: int,
    window: float,
    seed: int = 0,
    latency: tuple[float, float] = (0.002, 0.02),
    think: tuple[float, float] = (0.0, 0.01),
    backend: Callable[[], BudgetBackend] | None = None,
    starts: Callable[[int], float] = lambda task: 0.0,
    slowness: Callable[[int], float] = lambda task: 1.0,
    stalls: tuple[float, float] = (0.0, 0.0),
) -> Outcome:
    """
    Run ``tasks`` tasks of ``requests_per_task`` requests each against one :class:`SimulatedServer`.

    :param latency: bounds of the one-way network delay, drawn per leg.
    :param think: bounds of the time from a response to the task's next decision.
    :param backend: builds the budget backend of each task (shared ones return the same object).
    :param starts: when each task starts, in seconds.
    :param slowness: multiplies a task's think time (a task starved of CPU is slower than the others).
    :param stalls: the chance that a task stalls between a response and its next decision, and for
        how long (a process the scheduler left waiting).
    """
    rng = random.Random(seed)
    server = SimulatedServer(limit, window)
    now = [0.0]

    def clock() -> datetime:
        return EPOCH + timedelta(seconds=now[0])

    budgets = [
        RequestBudget(
            reset_header="duration", max_inline_wait=30.0, clock=clock, backend=backend() if backend else None
        )
        for _ in range(tasks)
    ]
    left = [requests_per_task] * tasks
    blind = [True] * tasks
    blind_refused = 0
    waits = [0] * tasks
    queue: list[tuple[float, int, str, int, dict[str, str]]] = []
    sequence = 0

    def schedule(at: float, kind: str, task: int, headers: dict[str, str] | None = None) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(queue, (at, sequence, kind, task, headers or {}))

    for task in range(tasks):
        schedule(starts(task), "decide", task)
    deferred = 0
    while queue:
        now[0], _, kind, task, headers = heapq.heappop(queue)
        budget = budgets[task]
        if kind == "decide":
            blind[task] = budget.status is None
            decision = budget.before_request()
            if decision.action is Action.DEFER:
                deferred += 1
                continue
            schedule(now[0] + decision.delay + rng.uniform(*latency), "arrive", task)
        elif kind == "arrive":
            answer = server.hit(now[0])
            blind_refused += blind[task] and answer["status"] == "429"
            schedule(now[0] + rng.uniform(*latency), "respond", task, answer)
        else:
            budget.observe(headers)
            if headers["status"] == "429":
                waits[task] += 1
                decision = budget.after_429(headers, waits=waits[task])
                schedule(now[0] + decision.delay, "decide", task)
                continue
            waits[task] = 0
            left[task] -= 1
            if left[task]:
                stall = stalls[1] if rng.random() < stalls[0] else 0.0
                schedule(now[0] + rng.uniform(*think) * slowness(task) + stall, "decide", task)
    times = [at for at, _ in server.log]
    return Outcome(
        refused=sum(refused for _, refused in server.windows()),
        blind_refused=blind_refused,
        windows=server.windows(),
        elapsed=max(times) - min(times),
        deferred=deferred,
    )


class InMemoryCountingBackend:
    """
    Stands for a shared store in one process: the window rules a Redis store follows, without I/O.

    :param down: when true, every call fails as an unreachable store's would.
    """

    def __init__(self) -> None:
        self.window: SharedWindow | None = None
        self.claimed: Counter[int] = Counter()
        self.down = False

    def _answer(self) -> None:
        if self.down:
            raise BudgetBackendError("ConnectionError")

    def load(self) -> RateLimitStatus | None:
        self._answer()
        return self.window.view(self.claimed[self.window.tag]) if self.window else None

    def store(self, status: RateLimitStatus | None) -> None:
        self._answer()
        if status is None:
            return
        merged = merge_window(self.window, status)
        if merged is not None:
            self.window = merged
        elif self.window is None or is_earlier_window(self.window.status, status):
            return
        self.claimed[self.window.tag] += self.window.uncounted(status, self.claimed[self.window.tag])

    def claim(self, at: datetime, reserve: int) -> bool:
        self._answer()
        tag, limit = self.window.claim_target(at) if self.window else (0, None)
        self.claimed[tag] += 1
        if limit is not None and self.claimed[tag] > limit - reserve:
            self.claimed[tag] -= 1
            return False
        return True
