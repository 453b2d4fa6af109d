"""
Worker processes for tests and benchmarks that claim something about concurrent tasks.

Each worker is a fresh interpreter (spawned, as an Airflow worker's task process is), imports the
provider once when it starts, and runs operators' ``execute`` as jobs. The jobs of one round wait
at a barrier after building their operator, so they start together rather than one by one as the
workers happen to become ready. Nothing here imports Airflow in the test process.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

BARRIER_SECONDS = 60.0
JOB_SECONDS = 180.0

_barrier: Any = None


@dataclass(frozen=True)
class Job:
    """
    One operator's ``execute`` in a worker.

    :param operator: the operator class as ``module:Class``.
    :param arguments: its keyword arguments (``task_id`` included).
    :param env: environment variables to set first (connections as ``AIRFLOW_CONN_*``).
    :param context: the context ``execute`` gets.
    """

    operator: str
    arguments: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


class JobFailed(Exception):
    """A job raised; the message holds the worker's traceback (exceptions do not all survive pickling)."""


def _start_worker(barrier: Any, modules: tuple[str, ...]) -> None:
    global _barrier
    _barrier = barrier
    for module in modules:
        importlib.import_module(module)


def _run(job: Job) -> Any:
    try:
        os.environ.update(job.env)
        module, _, name = job.operator.partition(":")
        operator = getattr(importlib.import_module(module), name)(**job.arguments)
    except BaseException:
        _barrier.abort()  # the others stop waiting for a job that will never arrive
        raise JobFailed(traceback.format_exc()) from None
    _barrier.wait(BARRIER_SECONDS)
    try:
        return operator.execute(job.context)
    except BaseException:
        raise JobFailed(traceback.format_exc()) from None


class WorkerPool:
    """
    ``workers`` spawned worker processes that run rounds of exactly ``workers`` jobs, started together.

    :param workers: how many processes (and jobs per round).
    :param modules: what each worker imports when it starts, before any job.
    """

    def __init__(self, workers: int, modules: tuple[str, ...]) -> None:
        context = multiprocessing.get_context("spawn")
        self.workers = workers
        self.barrier = context.Barrier(workers)
        self.executor = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(self.barrier, modules)
        )

    def run_together(self, jobs: list[Job]) -> list[Any]:
        """Run one round of jobs, one per worker, and return their results in order; re-raise the first failure."""
        assert len(jobs) == self.workers, f"a round is {self.workers} jobs, got {len(jobs)}"
        self.barrier.reset()  # a round that failed may have left it broken
        futures = [self.executor.submit(_run, job) for job in jobs]
        return [future.result(timeout=JOB_SECONDS) for future in futures]

    def close(self) -> None:
        """Stop the workers."""
        self.executor.shutdown(wait=True, cancel_futures=True)
