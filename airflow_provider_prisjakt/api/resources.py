"""
What can be exported from the Prisjakt API: each resource's columns, primary key and window rule.

Pure: no I/O, no Airflow. The export loop reads records through the hook and turns each into a flat,
typed row with :meth:`Resource.to_row`; writers and SQL sinks take their columns from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from airflow_provider_prisjakt.api.windows import to_utc

RAW_COLUMN = "raw"
EXTRACTED_AT_COLUMN = "_extracted_at"


class ColumnKind(StrEnum):
    """The value types a column can hold; writers and SQL dialects map each to their own type."""

    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"
    TIMESTAMP = "timestamp"
    DATE = "date"
    JSON = "json"


@dataclass(frozen=True)
class Column:
    """
    One typed column of an exported table or file.

    :param name: the column name.
    :param kind: the value type.
    :param nullable: whether the API may leave it empty.
    """

    name: str
    kind: ColumnKind
    nullable: bool = True


def _dig(record: Mapping[str, Any], *path: str) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _timestamp(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return to_utc(value)
    except ValueError:
        return None


def _date(value: Any) -> date | None:
    moment = _timestamp(value)
    return moment.date() if moment else None


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _integer(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _string(value: Any) -> str | None:
    return None if value is None else str(value)


def raw_json(record: Mapping[str, Any]) -> str:
    """Serialise a record compactly and deterministically, for the ``raw`` column and JSONL files."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True, default=str, ensure_ascii=False)


@dataclass(frozen=True)
class Resource:
    """
    An exportable kind of data.

    :param name: the ``resource`` argument of the operators.
    :param columns: the typed, flattened columns, before ``raw`` and ``_extracted_at``.
    :param primary_key: the columns identifying a row, for merges and de-duplication.
    :param window_column: the column that places a row in a window (for ``replace_window``), or
        ``None`` when rows do not belong to a time window.
    :param extract: maps an API record to the values of ``columns``.
    :param needs_pixel: whether the resource is read per pixel (otherwise per shop).
    :param scope_column: the column holding the target a row was read for (the pixel), which
        ``replace_window`` and partitioned layouts use; ``None`` for shop-scoped resources.
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    window_column: str | None
    extract: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    needs_pixel: bool = True
    scope_column: str | None = "pixel_id"

    @property
    def all_columns(self) -> tuple[Column, ...]:
        """The typed columns followed by ``raw`` (the whole record as JSON) and ``_extracted_at``."""
        return (
            *self.columns,
            Column(RAW_COLUMN, ColumnKind.JSON),
            Column(EXTRACTED_AT_COLUMN, ColumnKind.TIMESTAMP, nullable=False),
        )

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of :attr:`all_columns`."""
        return tuple(column.name for column in self.all_columns)

    def to_row(self, record: Mapping[str, Any], extracted_at: datetime) -> tuple[Any, ...]:
        """Flatten one API record to a row of :attr:`all_columns`."""
        return (*self.extract(record), raw_json(record), extracted_at)


EVENTS = Resource(
    name="events",
    columns=(
        Column("event_id", ColumnKind.STRING, nullable=False),
        Column("pixel_id", ColumnKind.STRING),
        Column("click_id", ColumnKind.STRING),
        Column("external_event_id", ColumnKind.STRING),
        Column("event_name", ColumnKind.STRING),
        Column("event_time", ColumnKind.TIMESTAMP),
        Column("amount", ColumnKind.DECIMAL),
        Column("currency", ColumnKind.STRING),
        Column("number_of_items", ColumnKind.INTEGER),
    ),
    primary_key=("event_id",),
    window_column="event_time",
    extract=lambda r: (
        _string(r.get("id")),
        _string(r.get("pixel_id")),
        _string(r.get("click_id")),
        _string(r.get("external_event_id")),
        _string(r.get("event_name")),
        _timestamp(r.get("event_time")),
        _decimal(_dig(r, "data", "amount")),
        _string(_dig(r, "data", "currency")),
        _integer(_dig(r, "data", "number_of_items")),
    ),
)

PURCHASE_SUMMARY = Resource(
    name="purchase_summary",
    columns=(
        Column("pixel_id", ColumnKind.STRING, nullable=False),
        Column("day", ColumnKind.DATE, nullable=False),
        Column("currency", ColumnKind.STRING, nullable=False),
        Column("purchases", ColumnKind.INTEGER),
        Column("total_amount", ColumnKind.DECIMAL),
    ),
    primary_key=("pixel_id", "day", "currency"),
    window_column="day",
    extract=lambda r: (
        _string(r.get("pixel_id")),
        _date(r.get("day")),
        _string(r.get("currency")),
        _integer(r.get("count")),
        _decimal(r.get("total_amount")),
    ),
)

CLICKS = Resource(
    name="clicks",
    columns=(
        Column("click_id", ColumnKind.STRING, nullable=False),
        Column("pixel_id", ColumnKind.STRING),
        Column("shop_id", ColumnKind.INTEGER),
        Column("clicked_at", ColumnKind.TIMESTAMP),
        Column("product_id", ColumnKind.INTEGER),
        Column("offer_id", ColumnKind.STRING),
        Column("cost", ColumnKind.DECIMAL),
        Column("currency", ColumnKind.STRING),
    ),
    primary_key=("click_id",),
    window_column=None,
    extract=lambda r: (
        _string(r.get("id")),
        _string(r.get("pixel_id")),
        _integer(r.get("shop_id")),
        _timestamp(r.get("clicked_at")),
        _integer(r.get("product_id")),
        _string(r.get("offer_id")),
        _decimal(r.get("cost")),
        _string(r.get("currency")),
    ),
)

PIXELS = Resource(
    name="pixels",
    columns=(
        Column("pixel_id", ColumnKind.STRING, nullable=False),
        Column("shop_id", ColumnKind.INTEGER),
        Column("name", ColumnKind.STRING),
        Column("created_at", ColumnKind.TIMESTAMP),
    ),
    primary_key=("pixel_id",),
    window_column=None,
    extract=lambda r: (
        _string(r.get("id")),
        _integer(r.get("shop_id")),
        _string(r.get("name")),
        _timestamp(r.get("created_at")),
    ),
    needs_pixel=False,
    scope_column=None,
)

RESOURCES: dict[str, Resource] = {resource.name: resource for resource in (EVENTS, PURCHASE_SUMMARY, CLICKS, PIXELS)}


def get_resource(name: str) -> Resource:
    """Return the resource called ``name``, or raise ``ValueError`` listing the valid names."""
    try:
        return RESOURCES[name]
    except KeyError:
        raise ValueError(f"resource must be one of {', '.join(RESOURCES)}, got {name!r}") from None
