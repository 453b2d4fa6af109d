"""Purchase summaries in every plausible shape, and their rows (pure, no network)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.api.resources import (
    PURCHASE_SUMMARY,
    RAW_COLUMN,
    SUMMARY_AMOUNT_MEMBERS,
    SUMMARY_COUNT_MEMBERS,
    ColumnKind,
    UnreadableSummaryError,
    normalise_purchase_summary,
    purchase_summary_records,
    summary_entries,
)

DAY = datetime(2026, 10, 1, tzinfo=UTC)
NEXT_DAY = DAY + timedelta(days=1)
EXPECTED = {
    "from": "2026-10-01T00:00:00Z",
    "to": "2026-10-02T00:00:00Z",
    "currencies": [
        {"currency": "EUR", "count": 2, "total_amount": 30.5},
        {"currency": "SEK", "count": 3, "total_amount": 1200.0},
    ],
}


def _entries(count: str = "count", amount: str = "total_amount") -> list[dict[str, Any]]:
    return [{"currency": "SEK", count: 3, amount: 1200.0}, {"currency": "EUR", count: 2, amount: 30.5}]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"from": "x", "to": "y", "currencies": _entries()}, id="currencies"),
        pytest.param(_entries(), id="bare list"),
        pytest.param({"from": "x", "to": "y", "summary": _entries()}, id="wrapped list"),
        pytest.param({"data": _entries(), "meta": {"count": 2}}, id="data with meta"),
        pytest.param({"data": {"currencies": _entries()}}, id="nested"),
        pytest.param(
            {"SEK": {"count": 3, "total_amount": 1200.0}, "EUR": {"count": 2, "total_amount": 30.5}}, id="by currency"
        ),
        pytest.param(
            {"from": "x", "currencies": {"SEK": {"count": 3, "total": 1200.0}, "EUR": {"count": 2, "total": 30.5}}},
            id="by currency, wrapped",
        ),
    ],
)
def test_every_plausible_shape_gives_the_one_normalised_shape(body: Any) -> None:
    assert normalise_purchase_summary(body, DAY, NEXT_DAY) == EXPECTED


@pytest.mark.parametrize("count", SUMMARY_COUNT_MEMBERS)
@pytest.mark.parametrize("amount", SUMMARY_AMOUNT_MEMBERS)
def test_every_member_name_of_count_and_total_is_read(count: str, amount: str) -> None:
    assert normalise_purchase_summary(_entries(count, amount), DAY, NEXT_DAY) == EXPECTED


def test_member_names_match_the_sandbox_knobs() -> None:
    assert SUMMARY_COUNT_MEMBERS == ("count", "purchases")
    assert SUMMARY_AMOUNT_MEMBERS == ("total_amount", "total", "amount", "sum", "revenue")


def test_numbers_sent_as_text_are_read() -> None:
    body = [{"currency": "SEK", "purchases": "3", "revenue": "1200.50"}]
    assert normalise_purchase_summary(body, DAY, NEXT_DAY)["currencies"] == [
        {"currency": "SEK", "count": 3, "total_amount": 1200.5}
    ]


def test_a_single_currency_object_is_one_entry() -> None:
    body = {"currency": "SEK", "count": 3, "sum": 1200.0}
    assert normalise_purchase_summary(body, DAY, NEXT_DAY)["currencies"] == [
        {"currency": "SEK", "count": 3, "total_amount": 1200.0}
    ]


@pytest.mark.parametrize("body", [[], {}, {"currencies": []}, {"currencies": None}, {"from": "x", "summary": []}])
def test_a_day_without_purchases_is_no_entries(body: Any) -> None:
    assert normalise_purchase_summary(body, DAY, NEXT_DAY)["currencies"] == []


@pytest.mark.parametrize(
    ("body", "seen"),
    [
        ({"title": "x", "total_purchases": 3}, "members title, total_purchases"),
        ([{"count": 3, "total_amount": 1}], "members count, total_amount"),
        ({"currencies": [{"currency": "SEK", "n": 3}]}, "members currency, n"),
        ("text", "a JSON str"),
        (None, "null"),
        ([1, 2], "a list of 2 item(s)"),
    ],
)
def test_an_unreadable_shape_is_one_clear_error_naming_what_it_saw(body: Any, seen: str) -> None:
    with pytest.raises(UnreadableSummaryError, match="purchase summary") as caught:
        normalise_purchase_summary(body, DAY, NEXT_DAY)
    assert seen in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_summary_entries_keep_each_entry_as_sent() -> None:
    entries = _entries("purchases", "revenue")
    assert summary_entries({"summary": entries}) == entries
    assert summary_entries(entries)[0] is entries[0]
    assert summary_entries({"SEK": {"purchases": 3}}) == [{"currency": "SEK", "purchases": 3}]


# -- rows ----------------------------------------------------------------------------------------


def test_the_purchase_summary_has_a_complete_column() -> None:
    complete = next(column for column in PURCHASE_SUMMARY.columns if column.name == "complete")
    assert complete.kind is ColumnKind.INTEGER
    assert PURCHASE_SUMMARY.column_names[-3:] == ("complete", RAW_COLUMN, "_extracted_at")


@pytest.mark.parametrize(("now", "complete"), [(DAY + timedelta(hours=5), 0), (NEXT_DAY, 1)])
def test_rows_are_typed_whatever_the_member_names_and_say_whether_the_day_was_over(
    now: datetime, complete: int
) -> None:
    body = {"EUR": {"purchases": 2, "revenue": "30.50", "refunds": 1}}
    [record] = purchase_summary_records(body, "pixel-1", DAY, NEXT_DAY, now)
    row = PURCHASE_SUMMARY.to_row(record, now)
    assert row[:6] == ("pixel-1", date(2026, 10, 1), "EUR", 2, Decimal("30.50"), complete)
    raw = json.loads(row[6])
    # raw keeps the record whole: the server's own member names and members the columns do not read.
    assert raw["purchases"] == 2
    assert raw["revenue"] == "30.50"
    assert raw["refunds"] == 1
    assert (raw["pixel_id"], raw["day"], raw["from"], raw["to"]) == (
        "pixel-1",
        "2026-10-01",
        "2026-10-01T00:00:00Z",
        "2026-10-02T00:00:00Z",
    )


@pytest.mark.parametrize(("value", "flag"), [(True, 1), (False, 0), ("true", 1), ("no", 0), (None, None), ("?", None)])
def test_complete_is_read_as_one_or_zero(value: object, flag: int | None) -> None:
    record = {"pixel_id": "p", "day": "2026-10-01", "currency": "SEK", "count": 1, "complete": value}
    assert PURCHASE_SUMMARY.extract(record)[-1] == flag


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4)
_BODIES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["currency", "count", "purchases", "total", "SEK", "EUR", "data", "currencies", "meta", "x"]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_BODIES)
def test_any_body_is_normalised_or_refused_with_the_one_error(body: Any) -> None:
    try:
        summary = normalise_purchase_summary(body, DAY, NEXT_DAY)
    except UnreadableSummaryError:
        return
    for entry in summary["currencies"]:
        assert set(entry) == {"currency", "count", "total_amount"}
        assert isinstance(entry["currency"], str)
    json.dumps(summary)
