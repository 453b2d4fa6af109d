"""PrisjaktToS3Operator against the Prisjakt sandbox and moto_server."""

from __future__ import annotations

import pytest

from tests.integration.conftest_services import ObjectStoreExportContract

pytestmark = pytest.mark.integration


class TestPrisjaktToS3(ObjectStoreExportContract):
    store_fixture = "s3_store"
