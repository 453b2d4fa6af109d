"""PrisjaktToGCSOperator against the Prisjakt sandbox and gcp-storage-emulator."""

from __future__ import annotations

import pytest

from tests.integration.conftest_services import ObjectStoreExportContract

pytestmark = pytest.mark.integration


class TestPrisjaktToGCS(ObjectStoreExportContract):
    store_fixture = "gcs_store"
