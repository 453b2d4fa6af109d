"""
Fixtures and shared tests for the object-store transfers (S3 on moto_server, GCS on gcp-storage-emulator).

Test modules import what they use from here: the session fixtures that run the services, the
``s3_store`` / ``gcs_store`` fixtures (a fresh bucket each, behind a small :class:`ObjectStore`
adapter) and :class:`ObjectStoreExportContract`, the tests both destinations must pass.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktNotFoundError, PrisjaktServerError
from airflow_provider_prisjakt.export.sinks.layout import MANIFEST_NAME, STAGING_DIR
from airflow_provider_prisjakt.export.sinks.object_store import ObjectStoreSink
from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from tests.integration.conftest import connect
from tests.integration.services import Service, start_gcs_emulator, start_moto_server

if TYPE_CHECKING:
    from airflow_provider_prisjakt.transfers.base import PrisjaktObjectStoreExportOperator

AWS_CONN_ID = "aws_prisjakt_test"
GCP_CONN_ID = "google_cloud_prisjakt_test"
SHOP = 4242
PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
EVENTS_PER_PIXEL = 20_000
MAX_ROWS_PER_FILE = 7_000
FORMATS = [("jsonl", None), ("jsonl", "gzip"), ("csv", None), ("csv", "gzip"), ("parquet", None)]

# -- services ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_service() -> Iterator[Service]:
    """``moto_server`` on a free port for the whole session."""
    service = start_moto_server()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def gcs_service() -> Iterator[Service]:
    """``gcp-storage-emulator`` (in memory) on a free port for the whole session."""
    service = start_gcs_emulator()
    yield service
    service.stop()


def _bucket_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class ObjectStore(ABC):
    """What the shared tests need of a destination: list, read, build the operator, name the output."""

    scheme: ClassVar[str]
    #: The operator argument holding the key prefix, as error messages name it.
    prefix_argument: ClassVar[str]

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @abstractmethod
    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``, sorted."""

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The bytes of one object."""

    @abstractmethod
    def operator(self, prefix: str, *, bucket: str | None = None, **kwargs: Any) -> PrisjaktObjectStoreExportOperator:
        """The transfer operator writing below ``prefix`` (of ``bucket``, default this store's bucket)."""

    def snapshot(self, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix`` with its bytes."""
        return {key: self.read(key) for key in self.keys(prefix)}

    def uri(self, prefix: str) -> str:
        """The output URI the operator reports for ``prefix``."""
        return f"{self.scheme}://{self.bucket}/{prefix.strip('/')}"


class S3Store(ObjectStore):
    """A bucket on moto_server, through ``S3Hook``."""

    scheme = "s3"
    prefix_argument = "s3_key"

    def __init__(self, bucket: str) -> None:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        super().__init__(bucket)
        self.hook = S3Hook(aws_conn_id=AWS_CONN_ID)
        self.hook.create_bucket(bucket_name=bucket, region_name="us-east-1")

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(self.hook.list_keys(bucket_name=self.bucket, prefix=prefix))

    def read(self, key: str) -> bytes:
        return self.hook.get_key(key, bucket_name=self.bucket).get()["Body"].read()

    def operator(self, prefix: str, *, bucket: str | None = None, **kwargs: Any) -> PrisjaktObjectStoreExportOperator:
        from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator

        kwargs.setdefault("task_id", "export_to_s3")
        return PrisjaktToS3Operator(s3_bucket=bucket or self.bucket, s3_key=prefix, aws_conn_id=AWS_CONN_ID, **kwargs)


class GCSStore(ObjectStore):
    """A bucket on gcp-storage-emulator, through ``GCSHook``."""

    scheme = "gs"
    prefix_argument = "object_name"

    def __init__(self, bucket: str) -> None:
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        super().__init__(bucket)
        self.hook = GCSHook(gcp_conn_id=GCP_CONN_ID)
        self.hook.get_conn().create_bucket(bucket)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(self.hook.list(self.bucket, prefix=prefix))

    def read(self, key: str) -> bytes:
        return self.hook.download(self.bucket, key)

    def operator(self, prefix: str, *, bucket: str | None = None, **kwargs: Any) -> PrisjaktObjectStoreExportOperator:
        from airflow_provider_prisjakt.transfers.prisjakt_to_gcs import PrisjaktToGCSOperator

        kwargs.setdefault("task_id", "export_to_gcs")
        return PrisjaktToGCSOperator(
            bucket=bucket or self.bucket, object_name=prefix, gcp_conn_id=GCP_CONN_ID, **kwargs
        )


@pytest.fixture
def s3_store(moto_service: Service, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    """A fresh bucket on moto_server, reachable through the ``aws_prisjakt_test`` connection."""
    extra = {
        "endpoint_url": moto_service.url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}", json.dumps({"conn_type": "aws", "extra": extra}))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    return S3Store(_bucket_name("prisjakt-s3"))


def connect_gcs(monkeypatch: pytest.MonkeyPatch, service: Service) -> None:
    """Point the ``google_cloud_prisjakt_test`` connection (anonymous) at a gcp-storage-emulator."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", service.url)
    connection = {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "prisjakt-test"}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{GCP_CONN_ID.upper()}", json.dumps(connection))


@pytest.fixture
def gcs_store(gcs_service: Service, monkeypatch: pytest.MonkeyPatch) -> GCSStore:
    """A fresh bucket on gcp-storage-emulator, reachable through the ``google_cloud_prisjakt_test`` connection."""
    connect_gcs(monkeypatch, gcs_service)
    return GCSStore(_bucket_name("prisjakt-gcs"))


# -- reading the output back ---------------------------------------------------------------------


def decode_part(name: str, data: bytes) -> list[dict[str, Any]]:
    """The rows of a part file: API records for JSON Lines, column dicts for CSV and Parquet."""
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8")
    if ".jsonl" in name:
        return [json.loads(line) for line in text.splitlines()]
    return list(csv.DictReader(io.StringIO(text, newline="")))


def api_records(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API records behind decoded rows: the rows themselves (JSON Lines) or their ``raw`` column."""
    return rows if ".jsonl" in name else [json.loads(row["raw"]) for row in rows]


def typed_fingerprint(name: str, rows: list[dict[str, Any]]) -> list[tuple[str, float, str]]:
    """(id, amount, currency) of each row, read from the typed columns (from the records for JSON Lines)."""
    if ".jsonl" in name:
        return [(r["id"], r["data"]["amount"], r["data"]["currency"]) for r in rows]
    return [(r["event_id"], float(r["amount"]), r["currency"]) for r in rows]


def fingerprint(events: list[dict[str, Any]]) -> list[tuple[str, float, str]]:
    """Ids with amounts and currencies, sorted: what must match the seed exactly."""
    return sorted((e["id"], e["data"]["amount"], e["data"]["currency"]) for e in events)


def without_extracted_at(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "_extracted_at"} for row in rows]


def published(store: ObjectStore, prefix: str) -> tuple[dict[str, Any], dict[str, bytes], dict[str, list]]:
    """
    The manifest, the part objects and their decoded rows under ``prefix``, checking that the
    manifest describes exactly these objects (names, bytes, SHA-256, rows) and nothing else is there.
    """
    folder = prefix.rstrip("/") + "/"
    objects = store.snapshot(folder)
    manifest = json.loads(objects.pop(folder + MANIFEST_NAME))
    parts = {key[len(folder) :]: data for key, data in objects.items()}
    assert [p["name"] for p in manifest["parts"]] == sorted(parts), "objects and manifest parts differ"
    decoded = {}
    for entry in manifest["parts"]:
        data = parts[entry["name"]]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
        decoded[entry["name"]] = decode_part(entry["name"], data)
        assert entry["rows"] == len(decoded[entry["name"]])
    assert manifest["rows"] == sum(p["rows"] for p in manifest["parts"])
    return manifest, parts, decoded


def pixel_prefix(prefix: str, pixel: str) -> str:
    """The folder of one pixel's output below an export's prefix: ``<prefix>/pixel_id=<id>/``."""
    return f"{prefix.rstrip('/')}/pixel_id={pixel}/"


def window_context(start: datetime, end: datetime) -> dict[str, Any]:
    return {"data_interval_start": start, "data_interval_end": end}


def pages_fetched(sandbox: PrisjaktSandbox) -> Counter[str]:
    return Counter(r.page_key for r in sandbox.requests if r.page_key and r.status == 200)


# -- the tests every object-store destination passes -----------------------------------------------------


class ObjectStoreExportContract:
    """
    Tests shared by the S3 and GCS transfers. A subclass names the fixture of its store in
    ``store_fixture``; the tests receive that store as ``store``.
    """

    store_fixture: ClassVar[str]

    @pytest.fixture
    def store(self, request: pytest.FixtureRequest) -> ObjectStore:
        return request.getfixturevalue(self.store_fixture)

    @pytest.fixture
    def sandbox(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrisjaktSandbox]:
        """A sandbox with 20,000 events per pixel, wired to ``prisjakt_default`` with 1,000-record pages."""
        sandbox = PrisjaktSandbox(SandboxConfig(events_per_pixel=EVENTS_PER_PIXEL)).start()
        connect(monkeypatch, sandbox, page_size=1000)
        yield sandbox
        sandbox.stop()

    @pytest.fixture
    def pixel(self, sandbox: PrisjaktSandbox) -> str:
        return sandbox.pixel_ids(SHOP)[0]

    @staticmethod
    def run(
        store: ObjectStore, prefix: str, pixel: str, start: datetime, end: datetime, **kwargs: Any
    ) -> dict[str, Any]:
        return store.operator(prefix, pixel_id=pixel, **kwargs).execute(window_context(start, end))

    @pytest.mark.parametrize(("file_format", "compression"), FORMATS, ids=lambda v: v or "plain")
    def test_every_format_holds_the_seeded_events_and_a_rerun_replaces_them_identically(
        self, store: ObjectStore, sandbox: PrisjaktSandbox, pixel: str, file_format: str, compression: str | None
    ) -> None:
        prefix = f"prisjakt/events/{file_format}/"
        options = {"file_format": file_format, "compression": compression, "max_rows_per_file": MAX_ROWS_PER_FILE}
        seed = sorted(sandbox.expected_events(pixel, PERIOD_START, PERIOD_END), key=lambda e: e["id"])
        assert len(seed) == EVENTS_PER_PIXEL

        folder = pixel_prefix(prefix, pixel)

        summary = self.run(store, prefix, pixel, PERIOD_START, PERIOD_END, **options)

        manifest, parts, decoded = published(store, folder)
        assert store.keys(prefix) == store.keys(folder)  # only the pixel's folder, nothing beside it
        assert summary["rows"] == manifest["rows"] == EVENTS_PER_PIXEL
        assert summary["files"] == len(parts) == 3
        assert [p["rows"] for p in manifest["parts"]] == [7000, 7000, 6000]
        assert summary["requests"] == 20  # 20,000 events in pages of 1,000
        records = [record for name, rows in decoded.items() for record in api_records(name, rows)]
        assert sorted(records, key=lambda e: e["id"]) == seed
        typed = sorted(row for name, rows in decoded.items() for row in typed_fingerprint(name, rows))
        assert typed == fingerprint(seed)
        if file_format != "jsonl":
            stamps = {str(row["_extracted_at"]) for rows in decoded.values() for row in rows}
            assert len(stamps) == 1

        self.run(store, prefix, pixel, PERIOD_START, PERIOD_END, **options)

        again, parts_again, decoded_again = published(store, folder)
        assert sorted(parts_again) == sorted(parts)
        assert store.keys(folder + STAGING_DIR) == []
        if file_format == "jsonl":
            assert parts_again == parts
            assert again["parts"] == manifest["parts"]
        else:
            for name, rows in decoded_again.items():
                assert without_extracted_at(rows) == without_extracted_at(decoded[name])

    def test_a_shorter_window_after_a_longer_one_removes_the_stale_parts(
        self, store: ObjectStore, sandbox: PrisjaktSandbox, pixel: str
    ) -> None:
        prefix = "prisjakt/events/window"
        folder = pixel_prefix(prefix, pixel)
        long_end, short_end = PERIOD_START + timedelta(days=6), PERIOD_START + timedelta(days=2)
        self.run(store, prefix, pixel, PERIOD_START, long_end, max_rows_per_file=1000)
        long_manifest, long_parts, _ = published(store, folder)

        self.run(store, prefix, pixel, PERIOD_START, short_end, max_rows_per_file=1000)

        manifest, parts, decoded = published(store, folder)
        expected = list(sandbox.expected_events(pixel, PERIOD_START, short_end))
        assert len(parts) < len(long_parts)
        assert manifest["rows"] == len(expected) < long_manifest["rows"]
        assert manifest["window"] == {"start": "2026-10-01T00:00:00Z", "end": "2026-10-03T00:00:00Z"}
        records = [record for rows in decoded.values() for record in rows]
        assert fingerprint(records) == fingerprint(expected)
        assert store.keys(folder + STAGING_DIR) == []

    def test_a_failed_run_leaves_the_published_output_untouched(
        self,
        store: ObjectStore,
        sandbox: PrisjaktSandbox,
        pixel: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        prefix = "prisjakt/events/failure"
        end = PERIOD_START + timedelta(days=4)
        self.run(store, prefix, pixel, PERIOD_START, end, max_rows_per_file=1000)
        before = store.snapshot()
        connect(monkeypatch, sandbox, page_size=1000, max_retries=2)
        staged_when_failing: list[str] = []
        close_part = ObjectStoreSink.close_part

        folder = pixel_prefix(prefix, pixel)

        def close_part_then_break_the_api(sink: ObjectStoreSink) -> dict[str, Any]:
            entry = close_part(sink)
            staged_when_failing[:] = store.keys(f"{folder}{STAGING_DIR}/")
            sandbox.fail_next("500", count=100)
            return entry

        monkeypatch.setattr(ObjectStoreSink, "close_part", close_part_then_break_the_api)

        with pytest.raises(PrisjaktServerError) as raised:
            self.run(store, prefix, pixel, PERIOD_START, end, max_rows_per_file=1000)

        assert raised.value.status == 500
        # The API broke once a part was staged; a page already fetched ahead may stage one more.
        assert staged_when_failing[:1] == [f"{folder}{STAGING_DIR}/part-00000.jsonl"]
        assert store.snapshot() == before
        assert store.keys(f"{folder}{STAGING_DIR}") == []

    def test_a_missing_bucket_is_one_clear_error_before_any_request(
        self, store: ObjectStore, sandbox: PrisjaktSandbox, pixel: str
    ) -> None:
        operator = store.operator("prisjakt/events", bucket="no-such-bucket-prisjakt", pixel_id=pixel)

        with pytest.raises(PrisjaktConfigError, match="'no-such-bucket-prisjakt' does not exist"):
            operator.execute(window_context(PERIOD_START, PERIOD_END))

        assert sandbox.requests == []
        assert store.keys() == []

    def test_a_key_starting_with_a_slash_is_refused_before_any_request(
        self, store: ObjectStore, sandbox: PrisjaktSandbox, pixel: str
    ) -> None:
        operator = store.operator("/prisjakt/events", pixel_id=pixel)

        with pytest.raises(PrisjaktConfigError, match=f"{store.prefix_argument} must be a relative"):
            operator.execute(window_context(PERIOD_START, PERIOD_END))

        assert sandbox.requests == []
        assert store.keys() == []

    def test_an_unknown_pixel_is_a_not_found_error_naming_the_request_id(
        self, store: ObjectStore, sandbox: PrisjaktSandbox
    ) -> None:
        missing = "180cd423-ee56-40ed-b712-2f075ec08d45"

        with pytest.raises(PrisjaktNotFoundError) as raised:
            self.run(store, "prisjakt/events", missing, PERIOD_START, PERIOD_END)

        assert raised.value.status == 404
        assert raised.value.request_id and raised.value.request_id in str(raised.value)
        assert missing in str(raised.value)
        assert len(sandbox.requests) == 1
        assert store.keys() == []

    def test_a_wrong_file_format_fails_at_construction(self, store: ObjectStore) -> None:
        with pytest.raises(ValueError, match="file_format must be one of jsonl, csv, parquet, got 'xlsx'"):
            store.operator("prisjakt/events", pixel_id="p", file_format="xlsx")

    def test_an_unknown_resource_fails_at_construction(self, store: ObjectStore) -> None:
        with pytest.raises(ValueError, match="resource must be one of .*, got 'orders'"):
            store.operator("prisjakt/events", pixel_id="p", resource="orders")

    def test_the_return_value_is_a_small_json_summary_without_records(
        self, store: ObjectStore, sandbox: PrisjaktSandbox, pixel: str
    ) -> None:
        start, end = PERIOD_START, PERIOD_START + timedelta(days=3)
        operator = store.operator("prisjakt/summary", pixel_id=pixel, start=start.isoformat(), end=end.isoformat())

        summary = operator.execute({})

        text = json.dumps(summary)
        assert len(text) < 2048
        assert summary["rows"] == len(list(sandbox.expected_events(pixel, start, end))) > 0
        assert summary["files"] == 1
        assert summary["requests"] == len(sandbox.requests)
        assert summary["destination"] == store.uri("prisjakt/summary")
        assert summary["window"] == {"start": "2026-10-01T00:00:00Z", "end": "2026-10-04T00:00:00Z"}
        assert not any(isinstance(value, (list, tuple)) for value in summary.values())
        assert all(event["id"] not in text for event in sandbox.expected_events(pixel, start, end))

    def test_purchase_summary_exports_one_row_per_day_and_currency(
        self, store: ObjectStore, sandbox: PrisjaktSandbox, pixel: str
    ) -> None:
        prefix = "prisjakt/purchase_summary"
        days = 5
        summary = self.run(
            store, prefix, pixel, PERIOD_START, PERIOD_START + timedelta(days=days), resource="purchase_summary"
        )

        _, _, decoded = published(store, pixel_prefix(prefix, pixel))
        rows = [row for part_rows in decoded.values() for row in part_rows]
        expected = {}
        for day in range(days):
            day_start = PERIOD_START + timedelta(days=day)
            api = sandbox.expected_purchase_summary(pixel, day_start, day_start + timedelta(days=1))
            for entry in api["currencies"]:
                expected[(day_start.date().isoformat(), entry["currency"])] = entry["count"]
        assert {(row["day"], row["currency"]): row["count"] for row in rows} == expected
        assert summary["rows"] == len(rows) == len(expected)
        assert summary["requests"] == days

    def test_pixels_export_lists_the_shops_pixels(self, store: ObjectStore, sandbox: PrisjaktSandbox) -> None:
        prefix = "prisjakt/pixels"
        operator = store.operator(prefix, resource="pixels", shop_id=SHOP, file_format="csv")

        summary = operator.execute(window_context(PERIOD_START, PERIOD_END))

        _, _, decoded = published(store, prefix)  # also: nothing else under the prefix, no pixel folders
        rows = [row for part_rows in decoded.values() for row in part_rows]
        assert [row["pixel_id"] for row in rows] == sandbox.pixel_ids(SHOP)
        assert {row["shop_id"] for row in rows} == {str(SHOP)}
        assert summary["rows"] == 3
        assert store.keys(prefix) == [f"{prefix}/{MANIFEST_NAME}", f"{prefix}/part-00000.csv"]

    def test_openlineage_reports_the_api_input_and_the_written_prefix(
        self, store: ObjectStore, sandbox: PrisjaktSandbox, pixel: str
    ) -> None:
        pytest.importorskip("airflow.providers.openlineage", reason="the openlineage provider is not installed")
        prefix = "prisjakt/lineage/"
        operator = store.operator(prefix, pixel_id=pixel)
        operator.execute(window_context(PERIOD_START, PERIOD_START + timedelta(days=1)))

        lineage = operator.get_openlineage_facets_on_complete(None)

        [source] = lineage.inputs
        [target] = lineage.outputs
        assert source.namespace == sandbox.base_url
        assert source.name == f"pixels/{pixel}/events"
        assert f"{target.namespace}/{target.name}" == store.uri(prefix)
        assert target.namespace == f"{store.scheme}://{store.bucket}"

    # -- one folder per pixel ----------------------------------------------------------------------

    def test_two_pixels_exported_one_after_the_other_into_one_prefix_both_survive(
        self, store: ObjectStore, sandbox: PrisjaktSandbox
    ) -> None:
        prefix = "prisjakt/events/shared/"
        first, second = sandbox.pixel_ids(SHOP)[:2]
        end = PERIOD_START + timedelta(days=2)

        self.run(store, prefix, first, PERIOD_START, end, max_rows_per_file=500)
        self.run(store, prefix, second, PERIOD_START, end, max_rows_per_file=500)

        for pixel in (first, second):
            manifest, _, decoded = published(store, pixel_prefix(prefix, pixel))
            assert manifest["targets"] == [pixel]
            records = [record for rows in decoded.values() for record in rows]
            assert fingerprint(records) == fingerprint(list(sandbox.expected_events(pixel, PERIOD_START, end)))
        assert sorted(store.keys(prefix)) == sorted(
            store.keys(pixel_prefix(prefix, first)) + store.keys(pixel_prefix(prefix, second))
        )

    def test_a_rerun_of_one_pixels_window_leaves_the_other_pixels_folder_byte_identical(
        self, store: ObjectStore, sandbox: PrisjaktSandbox
    ) -> None:
        prefix = "prisjakt/events/rerun/"
        rerun, other = sandbox.pixel_ids(SHOP)[:2]
        long_end, short_end = PERIOD_START + timedelta(days=4), PERIOD_START + timedelta(days=1)
        self.run(store, prefix, rerun, PERIOD_START, long_end, max_rows_per_file=500)
        self.run(store, prefix, other, PERIOD_START, long_end, max_rows_per_file=500)
        before = store.snapshot(pixel_prefix(prefix, other))
        _, long_parts, _ = published(store, pixel_prefix(prefix, rerun))

        self.run(store, prefix, rerun, PERIOD_START, short_end, max_rows_per_file=500)

        assert store.snapshot(pixel_prefix(prefix, other)) == before
        manifest, parts, decoded = published(store, pixel_prefix(prefix, rerun))  # the stale parts are gone
        assert len(parts) < len(long_parts)
        records = [record for rows in decoded.values() for record in rows]
        assert fingerprint(records) == fingerprint(list(sandbox.expected_events(rerun, PERIOD_START, short_end)))
        assert store.keys(f"{pixel_prefix(prefix, rerun)}{STAGING_DIR}") == []

    def test_a_shop_wide_export_writes_one_folder_per_pixel_with_its_manifest(
        self, store: ObjectStore, sandbox: PrisjaktSandbox
    ) -> None:
        prefix = "prisjakt/events/shop"
        pixels = sandbox.pixel_ids(SHOP)
        end = PERIOD_START + timedelta(days=2)
        operator = store.operator(prefix, shop_id=SHOP, max_rows_per_file=500)

        summary = operator.execute(window_context(PERIOD_START, end))

        folders = [pixel_prefix(prefix, pixel) for pixel in pixels]
        assert sorted(store.keys(prefix)) == sorted(key for folder in folders for key in store.keys(folder))
        files = 0
        for pixel, folder in zip(pixels, folders, strict=True):
            manifest, parts, decoded = published(store, folder)
            expected = list(sandbox.expected_events(pixel, PERIOD_START, end))
            assert manifest["targets"] == [pixel]
            assert manifest["rows"] == len(expected)
            assert [p["name"] for p in manifest["parts"]] == [f"part-{n:05d}.jsonl" for n in range(len(parts))]
            assert fingerprint([record for rows in decoded.values() for record in rows]) == fingerprint(expected)
            files += len(parts)
        assert summary["rows"] == sum(len(list(sandbox.expected_events(p, PERIOD_START, end))) for p in pixels)
        assert summary["files"] == files
        assert summary["destination"] == store.uri(prefix)
