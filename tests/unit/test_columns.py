"""Typed columns: a page read column by column holds what reading it record by record gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.api.columns import Column, ColumnKind
from airflow_provider_prisjakt.api.encoding import raw_json
from airflow_provider_prisjakt.api.resources import RESOURCES, purchase_summary_records
from airflow_provider_prisjakt.api.windows import WindowError, to_utc

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["2026-10-01T12:00:00Z", "2026-10-01", "12.50", "yes", "0"])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["amount", "currency", "number_of_items", "x"]), children, max_size=3)
        | st.dictionaries(st.sampled_from(["amount", "currency"]), children, max_size=2).map(MappingProxyType)
    ),
    max_leaves=8,
)
_MEMBERS = sorted(
    {
        path.split(".")[0]
        for resource in RESOURCES.values()
        for column in resource.columns
        for path in column.source or (column.name,)
    }
)
_RECORDS = st.lists(st.dictionaries(st.sampled_from(_MEMBERS), _VALUES, max_size=10), max_size=6)


@settings(max_examples=150, deadline=None)
@given(records=_RECORDS)
def test_every_column_reads_a_page_as_it_reads_each_record(records: list[dict[str, Any]]) -> None:
    for resource in RESOURCES.values():
        for column in resource.columns:
            get = column.getter()
            expected = [get(record) for record in records]
            values = column.values(records)
            # repr: NaN read as a Decimal or float equals nothing, not even itself
            assert repr(values) == repr(expected), (resource.name, column.name)


@settings(max_examples=150, deadline=None)
@given(records=_RECORDS)
def test_a_resource_flattens_a_page_into_the_rows_of_its_records(records: list[dict[str, Any]]) -> None:
    extracted_at = datetime(2026, 11, 2, tzinfo=UTC)
    for resource in RESOURCES.values():
        rows = list(zip(*resource.column_values(records, extracted_at), strict=True))

        expected = [(*resource.extract(record), raw_json(record), extracted_at) for record in records]
        assert repr(rows) == repr(expected), resource.name


_OFFSETS = st.builds(
    timezone, st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timedelta(minutes=m))
)


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30)),
    offset=st.none() | st.just(UTC) | _OFFSETS,
    form=st.sampled_from(["iso", "Z", "z", "spaced", "date", "millis"]),
)
def test_times_are_read_as_to_utc_reads_them(moment: datetime, offset: timezone | None, form: str) -> None:
    text = moment.replace(tzinfo=offset).isoformat()
    if form == "Z" and offset is UTC:
        text = text.replace("+00:00", "Z")
    elif form == "z" and offset is UTC:
        text = text.replace("+00:00", "z")
    elif form == "spaced":
        text = f" {text} "
    elif form == "date":
        text = moment.date().isoformat()
    elif form == "millis":
        text = moment.replace(tzinfo=offset).isoformat(timespec="milliseconds")
    try:
        expected: datetime | None = to_utc(text)
    except WindowError:
        expected = None
    column = Column("t", ColumnKind.TIMESTAMP)

    [value] = column.values([{"t": text}])

    assert value == expected == column.getter()({"t": text})
    assert value is None or (type(value) is datetime and value.tzinfo is UTC)


def test_a_member_of_a_nested_object_is_read_from_dicts_and_other_mappings_alike() -> None:
    amount = Column("amount", ColumnKind.DECIMAL, source=("data.amount",))
    records = [{"data": {"amount": 1.5}}, {"data": MappingProxyType({"amount": 2})}, {"data": "1.5"}, {}]

    assert [str(value) for value in amount.values(records)] == ["1.5", "2", "None", "None"]


@pytest.mark.parametrize("now", [datetime(2026, 10, 1, 5, tzinfo=UTC), datetime(2026, 10, 3, tzinfo=UTC)])
def test_a_summary_row_of_a_page_is_the_row_of_its_record(now: datetime) -> None:
    summary = RESOURCES["purchase_summary"]
    day = datetime(2026, 10, 1, tzinfo=UTC)
    records = purchase_summary_records({"SEK": {"count": 1, "total": 2.5}}, "px", day, day + timedelta(days=1), now)

    assert list(zip(*summary.column_values(records, now), strict=True)) == [summary.to_row(records[0], now)]
