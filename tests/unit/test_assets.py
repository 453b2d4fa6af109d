"""The asset each export declares (an alias named from its task) and the event it records: URIs and outlets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG, Asset, AssetAlias

from airflow_provider_prisjakt.transfers.assets import asset_alias_name, asset_uri_of, record_asset_events
from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator
from airflow_provider_prisjakt.version_compat import AIRFLOW_V_3_0_PLUS

# What only Airflow 3 has; deselected on Airflow 2 (make test-compat).
only_airflow_3 = pytest.mark.airflow3_only


def export(dag_id: str = "daily_export", **kwargs: Any) -> PrisjaktToS3Operator:
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 10, 1)):
        return PrisjaktToS3Operator(task_id="events_to_s3", pixel_id="p", s3_bucket="lake", s3_key="k/", **kwargs)


@pytest.mark.parametrize(
    ("destination", "asset"),
    [
        ("postgres://db:5432/warehouse.public.events", "postgres://db:5432/warehouse/public/events"),
        ("mysql://db:3306/warehouse.events", "mysql://db:3306/warehouse/events"),
        ("sqlite:///srv/data/warehouse.db/main.events", "sqlite:///srv/data/warehouse.db/main/events"),
        ("s3://lake/prisjakt/events/date=2026-10-20", "s3://lake/prisjakt/events/date=2026-10-20"),
        ("gs://lake/prisjakt/events/date=2026-10-20", "gs://lake/prisjakt/events/date=2026-10-20"),
        ("file:///srv/exports/prisjakt/events", "file:///srv/exports/prisjakt/events"),
        # already in the providers' form: left as it is
        ("postgres://db:5432/warehouse/public/events", "postgres://db:5432/warehouse/public/events"),
    ],
)
def test_a_destination_becomes_the_asset_uri_the_official_providers_use(destination: str, asset: str) -> None:
    assert asset_uri_of(destination) == asset


@pytest.mark.parametrize(
    "uri",
    ["postgres://db:5432/warehouse/public/events", "mysql://db:3306/warehouse/events"],
)
def test_airflow_and_the_database_providers_accept_the_table_uris_unchanged(uri: str) -> None:
    # The PostgreSQL and MySQL providers check and normalize their schemes' URIs; ours need no change.
    assert Asset(uri).uri == uri


def test_a_sqlite_asset_is_the_same_asset_as_airflow_normalizes_it() -> None:
    uri = asset_uri_of("sqlite:///srv/data/warehouse.db/main.events")

    assert Asset(uri) == Asset("sqlite:///srv/data/warehouse.db/main/events")


@only_airflow_3
def test_an_export_declares_an_alias_named_from_its_dag_and_task() -> None:
    assert export().outlets == [AssetAlias(name="prisjakt/daily_export/events_to_s3")]


@only_airflow_3
def test_the_alias_name_can_be_chosen() -> None:
    assert export(asset_alias="lake/{task_id}").outlets == [AssetAlias(name="lake/events_to_s3")]


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="Airflow 2 only")
def test_on_airflow_2_an_export_declares_no_outlet() -> None:
    assert export().outlets == []


def test_asset_alias_none_declares_no_outlet() -> None:
    assert export(asset_alias=None).outlets == []


def test_the_tasks_own_outlets_replace_the_alias() -> None:
    mine = Asset("s3://lake/prisjakt/events")

    assert export(outlets=[mine]).outlets == [mine]


@pytest.mark.parametrize("pattern", ["prisjakt/{dag}/{task_id}", "prisjakt/{0}", "  "])
def test_a_wrong_alias_name_fails_when_the_dag_is_parsed(pattern: str) -> None:
    with pytest.raises(ValueError, match="asset_alias"):
        export(asset_alias=pattern)


def test_alias_names_fill_in_dag_and_task() -> None:
    assert asset_alias_name("prisjakt/{dag_id}/{task_id}", "d", "group.t") == "prisjakt/d/group.t"


@only_airflow_3
def test_the_written_asset_is_attached_to_each_alias_and_the_figures_to_each_asset() -> None:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    alias, mine = AssetAlias(name="prisjakt/d/t"), Asset("s3://lake/prisjakt/events")
    events = OutletEventAccessors()
    extra = {"pixel_id": "p", "rows": 3, "window": {"start": "2026-10-20T00:00:00Z", "end": "2026-10-21T00:00:00Z"}}

    recorded = record_asset_events({"outlet_events": events}, [alias, mine], "s3://lake/day=2026-10-20", extra)

    assert recorded == ["prisjakt/d/t", "s3://lake/prisjakt/events"]
    (alias_event,) = events[alias].asset_alias_events
    assert (alias_event.dest_asset_key.uri, alias_event.extra) == ("s3://lake/day=2026-10-20", extra)
    assert events[mine].extra == extra


def test_nothing_is_recorded_outside_a_task_run_or_on_airflow_2() -> None:
    context: dict[str, Any] = {} if AIRFLOW_V_3_0_PLUS else {"outlet_events": {}}

    assert record_asset_events(context, [AssetAlias(name="a")], "s3://lake/x", {"rows": 1}) == []
