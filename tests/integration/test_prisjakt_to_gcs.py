"""PrisjaktToGCSOperator against the Prisjakt sandbox and gcp-storage-emulator."""

from __future__ import annotations

import pytest

# The shared tests live in conftest_services: let pytest explain their failed asserts too.
pytest.register_assert_rewrite("tests.integration.conftest_services")

from tests.integration.conftest_services import ObjectStoreExportContract, gcs_service, gcs_store  # noqa: E402, F401

pytestmark = pytest.mark.integration


class TestPrisjaktToGCS(ObjectStoreExportContract):
    store_fixture = "gcs_store"
