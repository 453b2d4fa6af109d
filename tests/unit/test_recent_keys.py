"""RecentKeys: the bounded de-duplication memory, checked against a plain reference model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.pagination import RecentKeys


def reference_keep_new(
    seen: list[Any], records: list[Any], capacity: int, key_field: str = "id"
) -> tuple[list[Any], list[Any]]:
    """Exact but unbounded model: a record is new unless its key is among the keys kept so far."""
    kept = []
    for record in records:
        key = record.get(key_field) if isinstance(record, dict) else None
        if key is None:
            kept.append(record)
        elif key not in seen:
            seen.append(key)
            kept.append(record)
    return kept, seen


def test_a_page_of_new_records_is_returned_whole() -> None:
    recent = RecentKeys(10)
    page = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert recent.keep_new(page) is page
    assert recent.snapshot() == ["a", "b", "c"]


def test_records_repeated_by_a_shifted_page_are_dropped() -> None:
    recent = RecentKeys(100)
    recent.keep_new([{"id": str(n)} for n in range(5)])
    shifted = [{"id": "3"}, {"id": "4"}, {"id": "5"}, {"id": "6"}]
    assert recent.keep_new(shifted) == [{"id": "5"}, {"id": "6"}]


def test_repeats_within_one_page_keep_the_first() -> None:
    recent = RecentKeys(100)
    page = [{"id": "a", "n": 1}, {"id": "b"}, {"id": "a", "n": 2}]
    assert recent.keep_new(page) == [{"id": "a", "n": 1}, {"id": "b"}]


def test_records_without_a_key_are_always_kept() -> None:
    recent = RecentKeys(100)
    page: list[Any] = [{"id": None}, {"other": 1}, "scalar", {"id": None}]
    assert recent.keep_new(page) == page
    assert recent.keep_new(page) == page
    assert recent.snapshot() == []


def test_the_last_capacity_keys_are_always_remembered() -> None:
    recent = RecentKeys(3)
    for key in "abcdefg":
        assert recent.first_time(key)
    for key in "efg":
        assert not recent.first_time(key), key
    assert recent.snapshot() == ["e", "f", "g"]


def test_memory_stays_bounded() -> None:
    recent = RecentKeys(100)
    for start in range(0, 10_000, 250):
        recent.keep_new([{"id": n} for n in range(start, start + 250)])
    remembered = sum(1 for n in range(10_000) if n in recent)
    assert all(n in recent for n in range(9_900, 10_000))
    assert 100 <= remembered <= 2 * 100 + 250
    assert len(recent.snapshot()) == 100


def test_initial_keys_come_back_in_the_snapshot_and_are_not_new() -> None:
    recent = RecentKeys(5, ["x", "y"])
    assert recent.snapshot() == ["x", "y"]
    assert recent.keep_new([{"id": "y"}, {"id": "z"}]) == [{"id": "z"}]


def test_unhashable_keys_are_remembered_by_their_repr() -> None:
    recent = RecentKeys(5)
    assert recent.keep_new([{"id": ["a"]}, {"id": ["a"]}, {"id": {"b": 1}}]) == [{"id": ["a"]}, {"id": {"b": 1}}]
    assert not recent.first_time(["a"])


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RecentKeys(0)


_KEYS = st.one_of(st.none(), st.sampled_from("abcdefghij"), st.integers(0, 9))
_RECORDS = st.lists(
    st.one_of(st.fixed_dictionaries({"id": _KEYS}), st.just({"other": 1}), st.just("scalar")), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(pages=st.lists(_RECORDS, max_size=8))
def test_keep_new_matches_the_exact_model_while_within_capacity(pages: list[list[Any]]) -> None:
    """With more room than distinct keys, the bounded memory is exact: page by page as the model."""
    recent = RecentKeys(1_000)
    seen: list[Any] = []
    for page in pages:
        expected, seen = reference_keep_new(seen, page, 1_000)
        assert recent.keep_new(list(page)) == expected
    assert recent.snapshot() == seen


@settings(max_examples=300, deadline=None)
@given(pages=st.lists(_RECORDS, max_size=8), capacity=st.integers(1, 6))
def test_keep_new_equals_first_time_record_by_record(pages: list[list[Any]], capacity: int) -> None:
    """The set-based fast path decides exactly as checking each record in turn."""
    fast, slow = RecentKeys(capacity), RecentKeys(capacity)
    for page in pages:
        one_by_one = [
            record for record in page if slow.first_time(record.get("id") if isinstance(record, dict) else None)
        ]
        assert fast.keep_new(list(page)) == one_by_one
