"""Fixtures for integration tests: sandboxes wired to Airflow connections."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from tests.conftest import register_secret

HookFactory = Callable[..., tuple[PrisjaktSandbox, PrisjaktHook]]

PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)


def rate_limited_config(*, pages: int, page_size: int, budget: int, window_seconds: float) -> SandboxConfig:
    """One pixel with ``pages`` full pages of events in October 2026, under ``budget`` requests per window."""
    return SandboxConfig(
        events_per_pixel=pages * page_size,
        page_size=page_size,
        period_start=PERIOD_START,
        period_end=PERIOD_END,
        rate_limit=budget,
        rate_window=window_seconds,
    )


def connect(
    monkeypatch: pytest.MonkeyPatch, sandbox: PrisjaktSandbox, conn_id: str = "prisjakt_default", **extra: Any
) -> PrisjaktHook:
    """Point connection ``conn_id`` at ``sandbox`` through ``AIRFLOW_CONN_*`` and return a hook on it."""
    register_secret(sandbox.client_secret)
    register_secret(sandbox.publisher_client_secret)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", sandbox.connection_json(**extra))
    return PrisjaktHook(conn_id)


@pytest.fixture
def sandbox_hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[HookFactory]:
    """``factory(extra={...}, **SandboxConfig fields)`` starts a sandbox and returns it with a connected hook."""
    started: list[PrisjaktSandbox] = []
    hooks: list[PrisjaktHook] = []

    def factory(extra: dict[str, Any] | None = None, **config: Any) -> tuple[PrisjaktSandbox, PrisjaktHook]:
        sandbox = PrisjaktSandbox(SandboxConfig(**config)).start()
        started.append(sandbox)
        hook = connect(monkeypatch, sandbox, **(extra or {}))
        hooks.append(hook)
        return sandbox, hook

    yield factory
    for hook in hooks:
        hook.close()
    for sandbox in started:
        sandbox.stop()


# The shared helpers' asserts explain their failures as a test's do.
# The object-store services and stores, for every test module in this folder. Imported last:
# conftest_services itself uses ``connect`` from this module.
pytest.register_assert_rewrite("tests.integration.conftest_services", "tests.integration.local_folder")
from tests.integration.airflow_cluster import airflow_cluster  # noqa: E402, F401
from tests.integration.conftest_services import gcs_service, gcs_store, moto_service, s3_store  # noqa: E402, F401
