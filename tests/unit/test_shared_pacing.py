"""
Tasks on one client id, each pacing with its own RequestBudget, against a simulated fixed-window API.

No network and no sleeping: :mod:`tests.unit.budget_simulation` runs the real budget decisions on a
simulated clock, with seeded latencies. The integration tests (``test_shared_budget``) claim the same
with real processes against the sandbox.
"""

from __future__ import annotations

import pytest

from .budget_simulation import InMemoryCountingBackend, Outcome, simulate

LIMIT = 50
WINDOW = 10.0
SEEDS = range(12)


def used_shares(outcome: Outcome, limit: int = LIMIT) -> list[float]:
    """The share of each window's budget used, for every window but the last (where the work ran out)."""
    return [allowed / limit for allowed, _ in outcome.windows[:-1]]


def test_one_task_alone_uses_every_window_to_the_last_request() -> None:
    outcome = simulate(1, 160, limit=LIMIT, window=WINDOW)

    assert outcome.refused == 0
    assert used_shares(outcome) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("seed", SEEDS)
def test_four_tasks_started_together_meet_no_429_and_use_nine_tenths_of_each_window(seed: int) -> None:
    outcome = simulate(4, 40, limit=LIMIT, window=WINDOW, seed=seed)

    assert outcome.refused == 0
    assert min(used_shares(outcome)) >= 0.86  # at most a reserve of 5 for the three others' requests in flight
    assert outcome.deferred == 0


@pytest.mark.parametrize(
    ("case", "variation"),
    [
        ("slow network", {"latency": (0.001, 0.3)}),
        ("stalled tasks", {"think": (0.0, 0.02), "stalls": (0.05, 0.5)}),
        ("one fast task", {"slowness": lambda task: 0.2 if task == 0 else 3.0}),
        (
            "starts a few requests apart",
            {"latency": (0.001, 0.003), "think": (0.0, 0.001), "starts": lambda t: t * 0.01},
        ),
    ],
)
def test_uneven_tasks_meet_no_429(case: str, variation: dict[str, object]) -> None:
    for seed in SEEDS:
        outcome = simulate(4, 25, limit=LIMIT, window=WINDOW, seed=seed, **variation)  # type: ignore[arg-type]
        assert outcome.refused == 0, f"{case}, seed {seed}: {outcome.refused} × 429"


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("tasks", [4, 16, 32])
def test_tasks_counting_in_a_shared_store_meet_no_429_and_use_every_window(tasks: int, seed: int) -> None:
    shared = InMemoryCountingBackend()

    outcome = simulate(
        tasks, 360 // tasks, limit=100, window=WINDOW, seed=seed, backend=lambda: shared, stalls=(0.05, 0.5)
    )

    assert outcome.refused == 0
    assert used_shares(outcome, 100) == [1.0] * (len(outcome.windows) - 1)
