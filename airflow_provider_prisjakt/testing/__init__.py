"""
A local Prisjakt Click and Conversion API for tests (standard library only).

Start it in code with :class:`PrisjaktSandbox`, in pytest with the
``prisjakt_sandbox`` and ``prisjakt_sandbox_factory`` fixtures, or from a shell
with ``python -m airflow_provider_prisjakt.testing serve`` (port 8765).
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
