"""Where the click index lies: the default beside templated keys, the operators' parameter, its names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_provider_prisjakt.api.resources import CLICKS
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export.formats import FileFormat
from airflow_provider_prisjakt.export.sinks.layout import default_click_index_prefix, index_object_name
from airflow_provider_prisjakt.export.sinks.object_store import LocalFolderSink
from airflow_provider_prisjakt.transfers.prisjakt_to_gcs import PrisjaktToGCSOperator
from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator


@pytest.mark.parametrize(
    ("key", "index"),
    [
        ("prisjakt/clicks/{{ ds }}/", "prisjakt/clicks/_click_index"),
        ("prisjakt/clicks/{{ ds }}", "prisjakt/clicks/_click_index"),
        ("prisjakt/clicks/dt={{ ds }}/", "prisjakt/clicks/_click_index"),
        ("prisjakt/clicks/{{ ds_nodash }}-export/", "prisjakt/clicks/_click_index"),
        ("clicks/year={{ y }}/month={{ m }}/day={{ d }}/", "clicks/_click_index"),
        ("prisjakt/{{ ds }}/clicks/", "prisjakt/_click_index"),
        ("prisjakt/clicks/{% if x %}a{% endif %}/", "prisjakt/clicks/_click_index"),
        ("{{ var.value.root }}/clicks/{{ ds }}/", "_click_index"),
        # Rendered, or written out: the key is the window's folder.
        ("prisjakt/clicks/2026-10-01/", "prisjakt/clicks/_click_index"),
        ("prisjakt/clicks/2026-10-01", "prisjakt/clicks/_click_index"),
        ("clicks", "_click_index"),
    ],
)
def test_the_default_index_lies_above_the_part_of_the_key_that_changes_per_window(key: str, index: str) -> None:
    assert default_click_index_prefix(key) == index


def test_a_templated_key_and_its_rendering_give_the_same_index() -> None:
    assert default_click_index_prefix("prisjakt/clicks/{{ ds }}/") == default_click_index_prefix(
        "prisjakt/clicks/2026-10-01/"
    )


def test_each_output_prefix_has_its_own_index_object_name() -> None:
    names = [index_object_name(prefix) for prefix in ("a/b", "a%2Fb", "a", "a/b/c", "a.json")]
    assert len(set(names)) == len(names)
    assert all("/" not in name and name.endswith(".json") for name in names)
    assert index_object_name("prisjakt/clicks/2026-10-01") == "prisjakt%2Fclicks%2F2026-10-01.json"


def test_the_operators_derive_the_index_from_the_key_as_written() -> None:
    s3 = PrisjaktToS3Operator(
        task_id="s3", s3_bucket="b", s3_key="prisjakt/{{ ds }}/clicks/", resource="clicks", pixel_id="p"
    )
    gcs = PrisjaktToGCSOperator(
        task_id="gcs", bucket="b", object_name="shop/clicks/{{ ds }}", resource="clicks", pixel_id="p"
    )

    assert s3.click_index_prefix == "prisjakt/_click_index"
    assert gcs.click_index_prefix == "shop/clicks/_click_index"
    assert "click_index_prefix" in s3.template_fields and "click_index_prefix" in gcs.template_fields


def test_an_explicit_index_prefix_is_kept_as_given() -> None:
    operator = PrisjaktToS3Operator(
        task_id="s3", s3_bucket="b", s3_key="out/{{ ds }}/", click_index_prefix="indexes/{{ params.shop }}"
    )

    assert operator.click_index_prefix == "indexes/{{ params.shop }}"


def test_a_key_known_only_at_run_time_leaves_the_index_to_the_sink() -> None:
    operator = PrisjaktToS3Operator(task_id="s3", s3_bucket="b", s3_key=object())  # type: ignore[arg-type]

    assert operator.click_index_prefix is None


def test_the_index_cannot_be_the_output_prefix_itself(tmp_path: Path) -> None:
    with pytest.raises(PrisjaktConfigError, match="click_index_prefix must differ"):
        LocalFolderSink(
            root=str(tmp_path),
            prefix="clicks/latest/",
            click_index_prefix="clicks/latest",
            resource=CLICKS,
            file_format=FileFormat.JSONL,
            compression=None,
            extracted_at=datetime(2026, 10, 1, tzinfo=UTC),
            spool_dir=str(tmp_path),
        )
