"""
Pytest plugin (entry point ``pytest11``) with Prisjakt sandbox fixtures.

Importing this module is cheap: the sandbox is imported only when a fixture runs.

- ``prisjakt_sandbox``: a started sandbox with the default configuration.
- ``prisjakt_sandbox_factory``: ``factory(**SandboxConfig fields)`` starts a
  sandbox; all of them stop at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing.server import PrisjaktSandbox

#: Type of the ``prisjakt_sandbox_factory`` fixture value.
SandboxFactory = Callable[..., "PrisjaktSandbox"]


@pytest.fixture
def prisjakt_sandbox_factory() -> Iterator[SandboxFactory]:
    """
    Start sandboxes from :class:`SandboxConfig` keyword arguments; stop them at teardown.

    :return: The factory.
    """
    from airflow_provider_prisjakt.testing.config import SandboxConfig
    from airflow_provider_prisjakt.testing.server import PrisjaktSandbox

    started: list[PrisjaktSandbox] = []

    def factory(**fields: Any) -> PrisjaktSandbox:
        sandbox = PrisjaktSandbox(SandboxConfig(**fields)).start()
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in reversed(started):
        sandbox.stop()


@pytest.fixture
def prisjakt_sandbox(prisjakt_sandbox_factory: SandboxFactory) -> PrisjaktSandbox:
    """
    A started sandbox with the default configuration.

    :return: The running sandbox.
    """
    return prisjakt_sandbox_factory()
