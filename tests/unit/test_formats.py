"""Part file writers: what each format writes, gzip determinism, part names and argument checks."""

from __future__ import annotations

import csv
import gc
import gzip
import hashlib
import io
import json
import warnings
import zlib
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_prisjakt.api.decoding import decode_json
from airflow_provider_prisjakt.api.encoding import raw_json
from airflow_provider_prisjakt.api.resources import EVENTS, PIXELS, PURCHASE_SUMMARY
from airflow_provider_prisjakt.export.formats import (
    GZIP_LEVEL,
    Compression,
    FileFormat,
    csv_value,
    file_digest,
    open_part_writer,
    parse_file_options,
    part_extension,
    part_name,
    typed_rows,
)

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

EXTRACTED_AT = datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC)

EVENT_RECORDS: list[dict[str, Any]] = [
    {
        "id": "ev-1",
        "pixel_id": "px-1",
        "click_id": "cl-1",
        "external_event_id": "order-1",
        "event_name": "purchase",
        "event_time": "2026-10-05T10:11:12Z",
        "data": {"amount": 1299.5, "currency": "SEK", "number_of_items": 2, "coupon": "ÅÄÖ-10"},
        "extra": {"nested": [1, {"deep": None}]},
    },
    {
        "id": "ev-2",
        "pixel_id": "px-1",
        "click_id": None,
        "event_name": "purchase",
        "event_time": "2026-10-05T09:00:00.123456+02:00",
        "data": {"amount": 0.1, "currency": "EUR"},
    },
    {"id": "ev-3", "pixel_id": "px-1", "event_name": "purchase", "data": {}},
]


def write_part(
    tmp_path: Path,
    file_format: str,
    records: list[dict[str, Any]],
    compression: str | None = None,
    name: str | None = None,
    resource: Any = EVENTS,
) -> Path:
    path = tmp_path / (name or part_name(0, file_format, compression))
    writer = open_part_writer(file_format, str(path), resource, EXTRACTED_AT, compression)
    # Two writes, as the export loop appends page by page.
    writer.write(records[:1])
    writer.write(records[1:])
    writer.close()
    assert writer.rows == len(records)
    return path


def text_of(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_jsonl_keeps_each_record_whole_one_compact_line_each(tmp_path: Path, compression: str | None) -> None:
    path = write_part(tmp_path, "jsonl", EVENT_RECORDS, compression)

    lines = text_of(path).split("\n")

    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == EVENT_RECORDS
    assert lines[:-1] == [raw_json(record) for record in EVENT_RECORDS]
    assert "ÅÄÖ-10" in lines[0]  # UTF-8, not \u escapes


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_csv_has_a_header_typed_columns_raw_and_extracted_at(tmp_path: Path, compression: str | None) -> None:
    path = write_part(tmp_path, "csv", EVENT_RECORDS, compression)

    reader = csv.reader(io.StringIO(text_of(path), newline=""))
    header, *rows = list(reader)

    assert tuple(header) == EVENTS.column_names
    assert header[-2:] == ["raw", "_extracted_at"]
    first, second, third = (dict(zip(header, row, strict=True)) for row in rows)
    assert first == {
        "event_id": "ev-1",
        "pixel_id": "px-1",
        "click_id": "cl-1",
        "external_event_id": "order-1",
        "event_name": "purchase",
        "event_time": "2026-10-05T10:11:12Z",
        "amount": "1299.5",
        "currency": "SEK",
        "number_of_items": "2",
        "raw": raw_json(EVENT_RECORDS[0]),
        "_extracted_at": "2026-11-02T03:04:05Z",
    }
    assert second["event_time"] == "2026-10-05T07:00:00.123456Z"  # converted to UTC
    assert second["click_id"] == "" and second["number_of_items"] == ""  # null is empty
    assert second["amount"] == "0.1"
    assert third["event_time"] == "" and third["amount"] == ""
    assert [json.loads(row["raw"]) for row in (first, second, third)] == EVENT_RECORDS


def test_csv_values_are_rendered_without_exponents_or_offsets() -> None:
    assert csv_value(None) == ""
    assert csv_value(Decimal("1E+2")) == "100"
    assert csv_value(Decimal("1E-7")) == "0.0000001"
    assert csv_value(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert csv_value(date(2026, 1, 2)) == "2026-01-02"
    assert csv_value(7) == 7


def test_parquet_schema_has_the_typed_columns(tmp_path: Path) -> None:
    path = write_part(tmp_path, "parquet", EVENT_RECORDS)

    schema = pq.read_schema(path)

    assert tuple(schema.names) == EVENTS.column_names
    assert schema.field("event_id").type == pa.string()
    assert not schema.field("event_id").nullable
    assert schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert schema.field("amount").type == pa.decimal128(38, 9)
    assert schema.field("number_of_items").type == pa.int64()
    assert schema.field("raw").type == pa.string()
    assert schema.field("_extracted_at").type == pa.timestamp("us", tz="UTC")
    assert not schema.field("_extracted_at").nullable
    assert pq.read_schema(write_part(tmp_path, "parquet", [], resource=PURCHASE_SUMMARY)).field("day").type == (
        pa.date32()
    )
    assert (
        pq.read_schema(write_part(tmp_path, "parquet", [], name="p.parquet", resource=PIXELS)).field("shop_id").type
        == pa.int64()
    )


def test_parquet_values_round_trip(tmp_path: Path) -> None:
    path = write_part(tmp_path, "parquet", EVENT_RECORDS)

    rows = pq.read_table(path).to_pylist()

    assert [row["event_id"] for row in rows] == ["ev-1", "ev-2", "ev-3"]
    assert rows[0]["amount"] == Decimal("1299.5")
    assert rows[0]["event_time"] == datetime(2026, 10, 5, 10, 11, 12, tzinfo=UTC)
    assert rows[1]["event_time"] == datetime(2026, 10, 5, 7, 0, 0, 123456, tzinfo=UTC)
    assert rows[0]["number_of_items"] == 2 and rows[1]["number_of_items"] is None
    assert rows[2]["amount"] is None and rows[2]["event_time"] is None
    assert [json.loads(row["raw"]) for row in rows] == EVENT_RECORDS
    assert {row["_extracted_at"] for row in rows} == {EXTRACTED_AT}


def test_parquet_takes_amounts_with_more_digits_than_its_scale(tmp_path: Path) -> None:
    # 0.1 + 0.2 from a shop's JavaScript arrives as 0.30000000000000004: 17 fractional digits.
    record = json.loads('{"id": "ev-9", "data": {"amount": 0.30000000000000004, "currency": "SEK"}}')

    rows = pq.read_table(write_part(tmp_path, "parquet", [record])).to_pylist()

    assert rows[0]["amount"] == Decimal("0.300000000")
    assert json.loads(rows[0]["raw"]) == record  # the exact value is kept in raw


def test_parquet_rounds_or_empties_only_the_amounts_its_decimal_column_cannot_hold(tmp_path: Path) -> None:
    amounts = b"[12.5, 0.30000000000000004, NaN, 1e400, 7]"
    page = [{"id": f"ev-{n}", "data": {"amount": amount}} for n, amount in enumerate(decode_json(amounts))]
    path = tmp_path / "part-00000.parquet"
    writer = open_part_writer("parquet", str(path), EVENTS, EXTRACTED_AT)
    writer.write(page)  # one page: its amounts are converted together
    writer.close()

    rows = pq.read_table(path).to_pylist()

    assert [row["amount"] for row in rows] == [Decimal("12.5"), Decimal("0.3"), None, None, Decimal(7)]
    assert [row["raw"] for row in rows] == [raw_json(record) for record in page]  # raw keeps NaN and Infinity


def test_parquet_compression_selects_the_codec(tmp_path: Path) -> None:
    snappy = write_part(tmp_path, "parquet", EVENT_RECORDS, name="a.parquet")
    gzipped = write_part(tmp_path, "parquet", EVENT_RECORDS, compression="gzip", name="b.parquet")

    assert pq.ParquetFile(snappy).metadata.row_group(0).column(0).compression == "SNAPPY"
    assert pq.ParquetFile(gzipped).metadata.row_group(0).column(0).compression == "GZIP"
    assert pq.read_table(gzipped).equals(pq.read_table(snappy))


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_gzip_output_is_deterministic_across_runs(tmp_path: Path, file_format: str) -> None:
    first = write_part(tmp_path, file_format, EVENT_RECORDS, "gzip", name=f"one.{file_format}.gz")
    second = write_part(tmp_path, file_format, EVENT_RECORDS, "gzip", name=f"two.{file_format}.gz")
    plain = write_part(tmp_path, file_format, EVENT_RECORDS, None, name=f"plain.{file_format}")

    data = first.read_bytes()
    assert data == second.read_bytes()
    assert data[4:8] == b"\0\0\0\0"  # mtime 0
    assert data[3] & 0x08 == 0  # no file name in the header
    assert gzip.decompress(data) == plain.read_bytes()


def test_gzip_parts_are_compressed_at_the_documented_level(tmp_path: Path) -> None:
    path = tmp_path / "part-00000.jsonl.gz"
    writer = open_part_writer("jsonl", str(path), EVENTS, EXTRACTED_AT, "gzip")
    writer.write([{**EVENT_RECORDS[0], "id": f"ev-{n}"} for n in range(300)])  # one page: one deflate call
    writer.close()

    data = path.read_bytes()
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    plain = gzip.decompress(data)
    assert GZIP_LEVEL == 6  # zlib's own default, as the CHANGELOG says
    assert data[8] == 0  # the header's "extra flags": neither the slowest (9) nor the fastest (1) level
    assert data[10:-8] == deflate.compress(plain) + deflate.flush()


def test_gzip_part_is_complete_and_closed_when_the_writer_closes(tmp_path: Path) -> None:
    path = tmp_path / "part-00000.jsonl.gz"
    records = [{"id": f"ev-{n}", "data": {"amount": n}} for n in range(5000)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        writer = open_part_writer("jsonl", str(path), EVENTS, EXTRACTED_AT, "gzip")
        writer.write(records)
        writer.close()
        # The size and hash are taken right after close: the file must be whole by then.
        size, sha256 = file_digest(str(path))
        del writer
        gc.collect()

    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    data = path.read_bytes()
    assert size == len(data) and sha256 == hashlib.sha256(data).hexdigest()
    assert len(gzip.decompress(data).splitlines()) == 5000


def test_empty_writes_add_nothing(tmp_path: Path) -> None:
    path = tmp_path / "part-00000.csv"
    writer = open_part_writer("csv", str(path), EVENTS, EXTRACTED_AT)
    writer.write([])
    writer.close()

    assert writer.rows == 0
    assert path.read_text() == ",".join(EVENTS.column_names) + "\n"


def test_file_digest_reports_size_and_sha256(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 3_000_000)

    assert file_digest(str(path)) == (3_000_000, hashlib.sha256(b"x" * 3_000_000).hexdigest())


@pytest.mark.parametrize(
    ("file_format", "compression", "extension"),
    [
        ("jsonl", None, ".jsonl"),
        ("jsonl", "gzip", ".jsonl.gz"),
        ("csv", None, ".csv"),
        ("csv", "gzip", ".csv.gz"),
        ("parquet", None, ".parquet"),
        ("parquet", "gzip", ".parquet"),  # Parquet compresses inside the file
    ],
)
def test_part_extension_and_name(file_format: str, compression: str | None, extension: str) -> None:
    assert part_extension(file_format, compression) == extension
    assert part_name(0, file_format, compression) == f"part-00000{extension}"
    assert part_name(42, file_format, compression) == f"part-00042{extension}"


@pytest.mark.parametrize(
    ("file_format", "compression", "names"),
    [
        ("xml", None, "file_format"),
        ("JSONL", None, "file_format"),
        ("", None, "file_format"),
        ("jsonl", "zip", "compression"),
        ("csv", "GZIP", "compression"),
        ("csv", "", "compression"),
    ],
)
def test_parse_file_options_names_the_bad_argument(file_format: str, compression: str | None, names: str) -> None:
    with pytest.raises(ValueError, match=names) as raised:
        parse_file_options(file_format, compression)

    assert repr(file_format if names == "file_format" else compression) in str(raised.value)


def test_open_part_writer_refuses_an_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file_format"):
        open_part_writer("xlsx", str(tmp_path / "x"), EVENTS, EXTRACTED_AT)

    assert list(tmp_path.iterdir()) == []


def test_parquet_gathers_small_pages_into_large_row_groups(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from airflow_provider_prisjakt.api.resources import EVENTS
    from airflow_provider_prisjakt.export.formats import PARQUET_ROW_GROUP_ROWS

    path = str(tmp_path / "part-00000.parquet")
    writer = open_part_writer("parquet", path, EVENTS, datetime(2026, 10, 1, tzinfo=UTC))
    page = [
        {"id": f"{i:08x}-0000-4000-8000-000000000000", "data": {"amount": 10.5, "currency": "SEK"}} for i in range(1000)
    ]
    pages = PARQUET_ROW_GROUP_ROWS // 1000 + 5
    for _ in range(pages):
        writer.write(page)
    writer.close()

    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_rows == pages * 1000
    assert metadata.num_row_groups == 2  # one full row group and the rest, not one per page


def test_file_options_are_read_once_into_enums() -> None:
    assert parse_file_options("parquet", None) == (FileFormat.PARQUET, None)
    assert parse_file_options("csv", "gzip") == (FileFormat.CSV, Compression.GZIP)
    assert parse_file_options(FileFormat.JSONL, Compression.GZIP) == (FileFormat.JSONL, Compression.GZIP)


def test_typed_rows_carry_the_pixel_they_were_read_for_whatever_the_record_says() -> None:
    documented = {"id": "ev-7", "event_time": "2026-10-05T10:11:12Z", "data": {"amount": 5}}  # no pixel_id
    named = {**documented, "id": "ev-8", "pixel_id": "px-other"}
    pixel = EVENTS.column_names.index("pixel_id")

    rows = typed_rows(EVENTS, [documented, named], EXTRACTED_AT, "px-1")

    assert [row[pixel] for row in rows] == ["px-1", "px-1"]
    assert [json.loads(row[EVENTS.column_names.index("raw")]) for row in rows] == [documented, named]
    assert typed_rows(EVENTS, [documented], EXTRACTED_AT, None)[0][pixel] is None
    assert typed_rows(PIXELS, [{"id": "px-1"}], EXTRACTED_AT, None)[0][0] == "px-1"


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_typed_formats_fill_the_pixel_column_from_the_scope(tmp_path: Path, file_format: str) -> None:
    path = tmp_path / part_name(0, file_format, None)
    writer = open_part_writer(file_format, str(path), EVENTS, EXTRACTED_AT)
    writer.write([{"id": "ev-1", "data": {"amount": 1}}], "px-9")
    writer.close()

    if file_format == "csv":
        [row] = list(csv.DictReader(io.StringIO(path.read_text(), newline="")))
    else:
        [row] = pq.read_table(path).to_pylist()
    assert row["pixel_id"] == "px-9"
    assert json.loads(row["raw"]) == {"id": "ev-1", "data": {"amount": 1}}  # the record stays as sent


def test_jsonl_keeps_the_record_as_sent_without_the_scope(tmp_path: Path) -> None:
    path = tmp_path / "part-00000.jsonl"
    writer = open_part_writer("jsonl", str(path), EVENTS, EXTRACTED_AT)
    writer.write([{"id": "ev-1"}], "px-9")
    writer.close()

    assert path.read_text() == '{"id":"ev-1"}\n'
