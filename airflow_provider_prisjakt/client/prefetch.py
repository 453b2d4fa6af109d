"""
Fetching one page ahead: the next page is fetched on a background thread while the caller works on this one.

An export mostly waits for the server. :class:`Prefetch` wraps an iterator of pages that only
fetches (requests and decoding) and, as it hands page N to the caller, starts fetching page N+1 on
its own thread, so that writing N and fetching N+1 overlap. It is never more than one page ahead:
memory holds the page being written and the one being fetched.

Only the source's work runs on the thread. What the caller does with a page (de-duplication, the
window filter, progress, checkpoints) stays in the caller's thread, in order, so a checkpoint taken
after page N holds nothing of page N+1. The source and the caller's questions never run at once:
the caller asks ``ahead_when()`` only between two fetches, and must send no request of its own
through the same hook while it iterates, so the hook's state (stats, budget, token) needs no lock.

``ahead_when()`` says whether to fetch ahead; for the API that is :func:`sends_at_once`, so a page
whose request would be paced, wait for the reset or defer is fetched only when the caller asks for
it, in the caller's thread: a pause is raised right after the last written page, and no paid page
is fetched to be thrown away. An error of a fetch ahead reaches the caller, as it was raised, when
it asks for that page. Closing (at the end, on a ``break``, or when writing failed) waits for the
fetch in flight, drops its page, and closes the source: no thread outlives the iteration.

Overlap pays only while fetching waits for the server: the two threads share the GIL, so their
CPU work never overlaps, and each hand-over costs. A fetch in the caller's thread measures the wait:
its wall time less the CPU time of the whole process, so that a server in the same process (the
sandbox, in tests) counts as competition, not as a wait. Pages are fetched ahead once the last two
such waits reach :data:`MIN_SERVER_WAIT_SECONDS` (one retry's backoff is not enough), and in turn
otherwise, as with a server on the same machine. While fetching ahead, every
:data:`REMEASURE_EVERY`-th page is fetched in the caller's thread to measure again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from airflow_provider_prisjakt.api.ratelimit import Action

if TYPE_CHECKING:
    from types import TracebackType

    from airflow_provider_prisjakt.client.budget import RequestBudget

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The name of the fetching thread; there is at most one per iteration, alive only while it fetches.
PREFETCH_THREAD_NAME = "prisjakt-prefetch"
#: How long the caller lets a fetch ahead run alone before it goes on with its page: about the time
#: a request takes to go out. A thread back from I/O waits for a busy thread to let go of the GIL,
#: up to the interpreter's switch interval (5 ms) each time, and sending a request takes several
#: such returns; with the head start the request is sent before the caller's work competes with it.
HEAD_START_SECONDS = 0.002
#: The least wait for the server per request, in seconds, for which fetching ahead pays.
MIN_SERVER_WAIT_SECONDS = 0.005
#: While fetching ahead, one page in this many is fetched in the caller's thread to measure the wait.
REMEASURE_EVERY = 16


def sends_at_once(budget: RequestBudget) -> bool:
    """Whether ``budget`` would send a request now: no pacing delay, no wait for the reset, no deferral."""
    decision = budget.before_request(dry_run=True)
    return decision.action is Action.GO and decision.delay <= 0


class _Fetch(threading.Thread, Generic[T]):
    """One fetch ahead: ``next(source)`` on its own thread, keeping the item, or the error, for the caller."""

    def __init__(self, source: Iterator[T]) -> None:
        super().__init__(name=PREFETCH_THREAD_NAME, daemon=True)
        self.source = source
        self.item: T | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.item = next(self.source)
        except BaseException as err:  # the caller's to handle, StopIteration included
            self.error = err

    def result(self) -> T:
        """Wait for the fetch; return its item, or raise its error (``StopIteration`` at the end)."""
        self.join()
        error, item, self.error, self.item = self.error, self.item, None, None
        if error is not None:
            raise error
        return item  # type: ignore[return-value]  # set when no error was


class Prefetch(Generic[T]):
    """
    The items of ``source``, each fetched while the caller works on the one before, when worth it.

    Use it as a context manager (or call :meth:`close`), so that a fetch in flight is waited for
    however the iteration ends.

    :param source: the items; an iterator that only fetches, advanced by one thread at a time.
    :param ahead_when: asked after each item is handed out, whether the next one may be fetched
        ahead; ``None`` fetches each item only when it is asked for (no thread at all).
    :param min_server_wait: fetch ahead only once the last two fetches in the caller's thread waited
        at least this long (seconds) beyond the process's CPU time; 0 always fetches ahead.
    """

    def __init__(
        self,
        source: Iterator[T],
        ahead_when: Callable[[], bool] | None = None,
        *,
        min_server_wait: float = MIN_SERVER_WAIT_SECONDS,
    ) -> None:
        self.source = source
        self.ahead_when = ahead_when
        self.min_server_wait = min_server_wait
        self._ahead: _Fetch[T] | None = None
        self._closed = False
        self._server_waits: deque[float] = deque(maxlen=2)  # of the last fetches in the caller's thread
        self._since_measured = 0  # items fetched ahead since

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        if self._closed:
            raise StopIteration
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            item = ahead.result()
            self._since_measured += 1
        else:
            item = self._fetch_here()
        if self._worth_fetching_ahead() and self.ahead_when is not None and self.ahead_when():
            self._ahead = _Fetch(self.source)
            self._ahead.start()
            self._ahead.join(HEAD_START_SECONDS)
        return item

    def _fetch_here(self) -> T:
        """Fetch the next item in this thread, measuring how long it waited beyond the process's CPU time."""
        wall, cpu = time.perf_counter(), time.process_time()
        item = next(self.source)
        self._server_waits.append((time.perf_counter() - wall) - (time.process_time() - cpu))
        self._since_measured = 0
        return item

    def _worth_fetching_ahead(self) -> bool:
        if self.min_server_wait <= 0:
            return True
        waits = self._server_waits
        measured = len(waits) == waits.maxlen and min(waits) >= self.min_server_wait
        return measured and self._since_measured < REMEASURE_EVERY - 1

    def close(self) -> None:
        """Wait for the fetch in flight and drop what it fetched, then close the source (a generator)."""
        self._closed = True
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.join()
            if ahead.error is not None and not isinstance(ahead.error, StopIteration):
                log.debug("Dropped the page fetched ahead, which failed: %s", type(ahead.error).__name__)
        if isinstance(self.source, Generator):
            self.source.close()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
