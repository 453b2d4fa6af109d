"""
Streaming record writers: JSON Lines, CSV and Parquet part files, optionally gzip-compressed.

A writer appends pages of API records to one local part file as they arrive and never holds more
than a page. JSON Lines keeps each API record whole; CSV and Parquet write the resource's typed,
flattened columns plus ``raw`` and ``_extracted_at``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_prisjakt.api.resources import raw_json

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.resources import Resource

FILE_FORMATS = ("jsonl", "csv", "parquet")
PARQUET_ROW_GROUP_ROWS = 64_000
COMPRESSIONS = ("gzip",)
_HASH_CHUNK = 1024 * 1024
#: Fractional digits of Parquet decimal columns; the exact value always stays in ``raw``.
DECIMAL_SCALE = 9
_DECIMAL_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
_DECIMAL_CONTEXT = Context(prec=38, rounding=ROUND_HALF_EVEN)


def validate_format(file_format: str, compression: str | None) -> None:
    """
    Check a ``file_format`` / ``compression`` pair.

    :raises ValueError: naming the parameter and the allowed values.
    """
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {', '.join(FILE_FORMATS)}, got {file_format!r}")
    if compression is not None and compression not in COMPRESSIONS:
        raise ValueError(f"compression must be 'gzip' or None, got {compression!r}")


def part_extension(file_format: str, compression: str | None) -> str:
    """Return the file name ending of a part, e.g. ``.jsonl.gz``; Parquet compresses inside the file."""
    if file_format == "parquet":
        return ".parquet"
    return f".{file_format}.gz" if compression == "gzip" else f".{file_format}"


def part_name(number: int, file_format: str, compression: str | None) -> str:
    """Return the deterministic name of part ``number``: ``part-00000.jsonl.gz``."""
    return f"part-{number:05d}{part_extension(file_format, compression)}"


@dataclass(frozen=True)
class PartFile:
    """
    A finished local part file.

    :param name: its name at the destination, e.g. ``part-00003.csv.gz``.
    :param path: where it lies on local disk.
    :param rows: the records it holds.
    :param size: its size in bytes.
    :param sha256: the hex SHA-256 of its bytes.
    """

    name: str
    path: str
    rows: int
    size: int
    sha256: str

    def manifest_entry(self) -> dict[str, Any]:
        """Return what the manifest records of this part."""
        return {"name": self.name, "rows": self.rows, "bytes": self.size, "sha256": self.sha256}


def file_digest(path: str) -> tuple[int, str]:
    """Return the size and SHA-256 of a file, reading it in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class _GzipPartFile(gzip.GzipFile):
    """
    A gzip file written with mtime 0 and no file name in the header, so the same rows give
    byte-identical files; unlike a plain ``GzipFile`` on a file object, closing it closes the file.
    """

    def __init__(self, path: str) -> None:
        self._target = open(path, "wb")  # noqa: SIM115
        super().__init__(filename="", mode="wb", fileobj=self._target, mtime=0)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._target.close()


def _open_text(path: str, compression: str | None) -> IO[str]:
    if compression == "gzip":
        return io.TextIOWrapper(_GzipPartFile(path), encoding="utf-8", newline="")
    return open(path, "w", encoding="utf-8", newline="")


class PartWriter(ABC):
    """
    Writes records into one local part file.

    :param path: the local file to create.
    :param resource: the resource the records belong to (its columns for CSV and Parquet).
    :param extracted_at: the value of the ``_extracted_at`` column.
    :param compression: ``gzip`` or ``None``.
    """

    def __init__(self, path: str, resource: Resource, extracted_at: datetime, compression: str | None) -> None:
        self.path = path
        self.resource = resource
        self.extracted_at = extracted_at
        self.compression = compression
        self.rows = 0

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records to the file."""
        if records:
            self._write(records)
            self.rows += len(records)

    @abstractmethod
    def _write(self, records: Sequence[Mapping[str, Any]]) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Flush and close the file."""


class JsonLinesWriter(PartWriter):
    """One API record per line, whole, as compact JSON."""

    def __init__(self, path: str, resource: Resource, extracted_at: datetime, compression: str | None) -> None:
        super().__init__(path, resource, extracted_at, compression)
        self._handle = _open_text(path, compression)

    def _write(self, records: Sequence[Mapping[str, Any]]) -> None:
        self._handle.write("".join(raw_json(record) + "\n" for record in records))

    def close(self) -> None:
        """Flush and close the file."""
        self._handle.close()


def csv_value(value: Any) -> Any:
    """Render a typed value for CSV: ISO-8601 UTC times, plain decimals, empty for null."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


class CsvWriter(PartWriter):
    """A header row, then the resource's typed columns, ``raw`` and ``_extracted_at``."""

    def __init__(self, path: str, resource: Resource, extracted_at: datetime, compression: str | None) -> None:
        super().__init__(path, resource, extracted_at, compression)
        self._handle = _open_text(path, compression)
        self._csv = csv.writer(self._handle, lineterminator="\n")
        self._csv.writerow(resource.column_names)

    def _write(self, records: Sequence[Mapping[str, Any]]) -> None:
        to_row = self.resource.to_row
        self._csv.writerows([csv_value(v) for v in to_row(record, self.extracted_at)] for record in records)

    def close(self) -> None:
        """Flush and close the file."""
        self._handle.close()


def arrow_schema(resource: Resource) -> Any:
    """Return the pyarrow schema of a resource's columns."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "json": pa.string(),
        "integer": pa.int64(),
        "decimal": pa.decimal128(38, DECIMAL_SCALE),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
    }
    return pa.schema([pa.field(c.name, types[c.kind], nullable=c.nullable) for c in resource.all_columns])


def _fit_decimal(value: Decimal | None) -> Decimal | None:
    if value is None or not value.is_finite():
        return None  # NaN and infinities have no decimal128 form; ``raw`` keeps them
    return value.quantize(_DECIMAL_QUANTUM, context=_DECIMAL_CONTEXT)


class ParquetWriter(PartWriter):
    """
    Typed columns in Parquet; ``gzip`` selects the codec (snappy otherwise).

    Pages are converted to Arrow as they arrive and written in row groups of about
    :data:`PARQUET_ROW_GROUP_ROWS` rows: one row group per small page would compress badly and
    make files much larger, while the Arrow buffer of one row group stays small.
    """

    def __init__(self, path: str, resource: Resource, extracted_at: datetime, compression: str | None) -> None:
        super().__init__(path, resource, extracted_at, compression)
        try:
            import pyarrow.parquet as pq
        except ImportError as err:  # pragma: no cover - depends on the installed extras
            raise ImportError(
                "file_format='parquet' needs pyarrow: pip install 'airflow-provider-prisjakt[parquet]'"
            ) from err
        self._schema = arrow_schema(resource)
        self._kinds = [column.kind for column in resource.all_columns]
        self._writer = pq.ParquetWriter(path, self._schema, compression=compression or "snappy")
        self._pending: list[Any] = []
        self._pending_rows = 0

    def _write(self, records: Sequence[Mapping[str, Any]]) -> None:
        import pyarrow as pa

        rows = [self.resource.to_row(record, self.extracted_at) for record in records]
        columns = list(zip(*rows, strict=True))
        # A JSON number such as 19.990000000000002 has more digits than the column's scale, which
        # pyarrow refuses ("would cause data loss"): round it to the scale instead of failing the export.
        columns = [
            tuple(_fit_decimal(value) for value in column) if kind == "decimal" else column
            for column, kind in zip(columns, self._kinds, strict=True)
        ]
        arrays = [pa.array(column, type=field.type) for column, field in zip(columns, self._schema, strict=True)]
        self._pending.append(pa.Table.from_arrays(arrays, schema=self._schema))
        self._pending_rows += len(records)
        if self._pending_rows >= PARQUET_ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=self._pending_rows)
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        """Write the last row group and the footer, and close the file."""
        self._flush()
        self._writer.close()


_WRITERS: dict[str, type[PartWriter]] = {"jsonl": JsonLinesWriter, "csv": CsvWriter, "parquet": ParquetWriter}


def open_part_writer(
    file_format: str, path: str, resource: Resource, extracted_at: datetime, compression: str | None = None
) -> PartWriter:
    """Create the writer for ``file_format`` on a new local file."""
    validate_format(file_format, compression)
    return _WRITERS[file_format](path, resource, extracted_at, compression)
