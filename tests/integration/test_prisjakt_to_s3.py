"""PrisjaktToS3Operator against the Prisjakt sandbox and moto_server."""

from __future__ import annotations

import pytest

# The shared tests live in conftest_services: let pytest explain their failed asserts too.
pytest.register_assert_rewrite("tests.integration.conftest_services")

from tests.integration.conftest_services import ObjectStoreExportContract, moto_service, s3_store  # noqa: E402, F401

pytestmark = pytest.mark.integration


class TestPrisjaktToS3(ObjectStoreExportContract):
    store_fixture = "s3_store"
