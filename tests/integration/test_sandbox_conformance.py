"""The sandbox conforms to the reconstructed OpenAPI document, so the provider is tested against the API as documented."""

from __future__ import annotations

import filecmp
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig

SPEC = Path(__file__).resolve().parent.parent / "data" / "prisjakt-openapi.yaml"
SHARED_SPEC = Path(__file__).resolve().parents[3] / "shared" / "prisjakt-api" / "openapi.yaml"


@pytest.fixture(scope="module")
def conformance_sandbox() -> Iterator[PrisjaktSandbox]:
    with PrisjaktSandbox(SandboxConfig(rate_limit=1_000_000, events_per_pixel=300)) as sandbox:
        yield sandbox


def read_operations() -> list:
    schema = schemathesis.openapi.from_path(SPEC)
    # The provider reads; the write operations and the docs pages (path unknown) are not served.
    schema = schema.include(method="GET").exclude(path_regex=r"^/docs")
    return [result.ok() for result in schema.get_all_operations()]


OPERATIONS = read_operations()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_sandbox_answers_as_the_spec_documents(operation: Any, conformance_sandbox: PrisjaktSandbox) -> None:
    headers = {"client-id": conformance_sandbox.client_id, "client-secret": conformance_sandbox.client_secret}

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=conformance_sandbox.base_url, headers=headers)

    conforms()
    assert conformance_sandbox.requests, "schemathesis sent no request"


def test_the_spec_copy_matches_the_team_reference() -> None:
    if not SHARED_SPEC.exists():
        pytest.skip(f"no team reference at {SHARED_SPEC}")
    assert filecmp.cmp(SPEC, SHARED_SPEC, shallow=False)
