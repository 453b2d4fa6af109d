"""Fault scheduling of the Prisjakt sandbox: random faults, bursts and ``fail_next``."""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_prisjakt.testing.config import (
    FAULT_KINDS,
    BurstBudget,
    BurstRetryAfter,
    FaultConfig,
    RetryAfterForm,
    check_choice,
)


@dataclass(frozen=True)
class Fault:
    """
    One fault to inject into a request.

    :param kind: One of :data:`~airflow_provider_prisjakt.testing.config.FAULT_KINDS`.
    :param options: Kind-specific options (``location`` for ``redirect``,
        ``seconds`` for ``stall``, ``reset_ms``, ``budget`` and ``retry_after`` for
        ``429``, ``status`` for ``errors``, ``retry_after_s`` and ``retry_after`` for
        the other answers).
    """

    kind: str
    options: dict[str, Any] = field(default_factory=dict)


class FaultPlan:
    """Thread-safe source of faults: scheduled ones first, then bursts, then random draws."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._burst_left = 0
        self._config: FaultConfig | None = None
        self._rng = random.Random(0)

    def schedule(self, kind: str, count: int, options: dict[str, Any]) -> None:
        """
        Make the next ``count`` API requests get fault ``kind``.

        :param kind: Fault kind.
        :param count: Number of requests.
        :param options: Kind-specific options.
        :raises ValueError: For an unknown kind, a bad count, a redirect without
            location or a 429 option outside its closed set.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if kind == "redirect" and "location" not in options:
            raise ValueError("a redirect fault needs options['location']")
        if kind == "429":
            check_choice("budget", options.get("budget", "spent"), BurstBudget)
            check_choice("retry_after", options.get("retry_after", "inherit"), BurstRetryAfter)
        elif "retry_after" in options:
            check_choice("retry_after", options["retry_after"], RetryAfterForm)
        with self._lock:
            self._queue.extend(Fault(kind, dict(options)) for _ in range(count))

    def clear(self) -> None:
        """Forget scheduled faults and any running burst."""
        with self._lock:
            self._queue.clear()
            self._burst_left = 0

    def draw(self, config: FaultConfig) -> Fault | None:
        """
        Return the fault for the next API request, if any.

        :param config: Current random-fault configuration; a new configuration
            reseeds the random generator.
        :return: A fault or ``None``.
        """
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if config is not self._config:
                self._config = config
                self._rng = random.Random(config.seed)
                self._burst_left = 0
            if self._burst_left > 0:
                self._burst_left -= 1
                return Fault("429", {"reset_ms": config.burst_reset_ms, "burst": True})
            roll = self._rng.random()
            choices: tuple[tuple[float, str], ...] = (
                (config.error_rate, "500" if self._rng.random() < 0.5 else "503"),
                (config.html_error_rate, "html502"),
                (config.drop_rate, "drop"),
                (config.truncate_rate, "truncate"),
                (config.stall_rate, "stall"),
                (config.burst_429_rate, "429"),
            )
            for rate, kind in choices:
                if roll < rate:
                    if kind == "stall":
                        return Fault(kind, {"seconds": config.stall_seconds})
                    if kind == "429":
                        self._burst_left = config.burst_length - 1
                        return Fault(kind, {"reset_ms": config.burst_reset_ms, "burst": True})
                    return Fault(kind)
                roll -= rate
            return None
