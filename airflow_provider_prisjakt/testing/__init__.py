"""
A local Prisjakt Click and Conversion API for tests (standard library only).

Start it in code with :class:`PrisjaktSandbox`, in pytest with the
``prisjakt_sandbox`` and ``prisjakt_sandbox_factory`` fixtures, or from a shell
with ``python -m airflow_provider_prisjakt.testing serve`` (port 8765). For tests and benchmarks of
tasks that share a client id, :mod:`~airflow_provider_prisjakt.testing.workers` runs operators in
worker processes started together, and :mod:`~airflow_provider_prisjakt.testing.shared_budget`
holds their job, a ``redis-server`` of their own and the sandbox's rate-limit windows.
"""

from __future__ import annotations

from airflow_provider_prisjakt.testing.config import (
    FaultConfig,
    RecordedRequest,
    SandboxClient,
    SandboxConfig,
)
from airflow_provider_prisjakt.testing.server import PrisjaktSandbox

__all__ = [
    "FaultConfig",
    "PrisjaktSandbox",
    "RecordedRequest",
    "SandboxClient",
    "SandboxConfig",
]
