"""The provider's self-description, read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_prisjakt import __version__
from airflow_provider_prisjakt.hooks.connection import CONN_TYPE, conn_fields, ui_field_behaviour_for_provider_info

INTEGRATION = "Prisjakt"


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata Airflow's ProvidersManager reads (schema: ``provider_info.schema.json``)."""
    return {
        "package-name": "airflow-provider-prisjakt",
        "name": "Prisjakt",
        "description": "`Prisjakt <https://www.prisjakt.nu/>`__ Click and Conversion API: export conversion "
        "events, purchase summaries, clicks and pixels to S3, GCS or SQL within the API's rate limit.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://developer.prisjakt.nu/docs/apis/rest/click-api/prisjakt-click-and-conversion-api",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_prisjakt.hooks.prisjakt"]}],
        "sensors": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_prisjakt.sensors.prisjakt"]}
        ],
        "triggers": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_prisjakt.triggers.prisjakt"]}
        ],
        "transfers": [
            {
                "source-integration-name": INTEGRATION,
                "target-integration-name": "Amazon Simple Storage Service (S3)",
                "python-module": "airflow_provider_prisjakt.transfers.prisjakt_to_s3",
            },
            {
                "source-integration-name": INTEGRATION,
                "target-integration-name": "Google Cloud Storage (GCS)",
                "python-module": "airflow_provider_prisjakt.transfers.prisjakt_to_gcs",
            },
            {
                "source-integration-name": INTEGRATION,
                "target-integration-name": "Common SQL",
                "python-module": "airflow_provider_prisjakt.transfers.prisjakt_to_sql",
            },
        ],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_provider_prisjakt.hooks.prisjakt.PrisjaktHook",
                "hook-name": "Prisjakt",
                "ui-field-behaviour": ui_field_behaviour_for_provider_info(),
                "conn-fields": conn_fields(),
            }
        ],
    }
