"""Fixed-window rate limiting per client id, as the Prisjakt API gateway does it."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    """
    Outcome of counting one request.

    :param allowed: Whether the request is within the limit.
    :param limit: ``X-RateLimit-Limit``.
    :param remaining: ``X-RateLimit-Remaining``.
    :param reset_seconds: Seconds until the window resets.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float

    def headers(self, reset_style: str, retry_after: bool) -> dict[str, str]:
        """
        Render the rate-limit headers.

        :param reset_style: ``"duration"`` or ``"epoch"``.
        :param retry_after: Add ``Retry-After`` (only when the request was refused).
        :return: Header name to value.
        """
        reset_ms = math.ceil(self.reset_seconds * 1000)
        if reset_style == "epoch":
            reset_ms = math.ceil(time.time() * 1000) + reset_ms
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(reset_ms),
        }
        if retry_after and not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.reset_seconds)))
        return headers


class RateLimiter:
    """Thread-safe fixed windows keyed by client id; a window starts at the first request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def reset(self) -> None:
        """Forget every window."""
        with self._lock:
            self._windows.clear()

    def hit(self, key: str, limit: int, window: float) -> RateDecision:
        """
        Count one request of ``key``.

        :param key: Client id (or a placeholder for anonymous requests).
        :param limit: Requests allowed per window.
        :param window: Window length in seconds.
        :return: The decision with header values.
        """
        now = time.monotonic()
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= window:
                start, used = now, 0
            used += 1
            self._windows[key] = (start, used)
        reset = max(0.0, start + window - now)
        return RateDecision(used <= limit, limit, max(0, limit - used), reset)
