"""RecentKeys: the page-sized de-duplication memory, checked against a plain reference model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.api.recent_keys import RecentKeys


def reference_keep_new(seen: list[str], records: list[Any], key_field: str = "id") -> list[Any]:
    """Exact but unbounded model: a record is new unless its key, as text, was seen before."""
    kept = []
    for record in records:
        key = record.get(key_field) if isinstance(record, dict) else None
        if key is None:
            kept.append(record)
        elif str(key) not in seen:
            seen.append(str(key))
            kept.append(record)
    return kept


def test_a_page_of_new_records_is_returned_whole() -> None:
    recent = RecentKeys(snapshot_size=10)
    page = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert recent.keep_new(page) is page
    assert recent.snapshot() == ["a", "b", "c"]


def test_records_repeated_by_a_shifted_page_are_dropped() -> None:
    recent = RecentKeys()
    recent.keep_new([{"id": str(n)} for n in range(5)])
    shifted = [{"id": "3"}, {"id": "4"}, {"id": "5"}, {"id": "6"}]
    assert recent.keep_new(shifted) == [{"id": "5"}, {"id": "6"}]


def test_repeats_within_one_page_keep_the_first() -> None:
    recent = RecentKeys()
    page = [{"id": "a", "n": 1}, {"id": "b"}, {"id": "a", "n": 2}]
    assert recent.keep_new(page) == [{"id": "a", "n": 1}, {"id": "b"}]


def test_records_without_a_key_are_always_kept() -> None:
    recent = RecentKeys(snapshot_size=100)
    page: list[Any] = [{"id": None}, {"other": 1}, "scalar", {"id": None}]
    assert recent.keep_new(page) == page
    assert recent.keep_new(page) == page
    assert recent.snapshot() == []


def test_keys_are_compared_as_text_as_checkpoints_store_them() -> None:
    recent = RecentKeys(initial=["1", "True"], snapshot_size=100)
    assert recent.keep_new([{"id": 1}, {"id": True}, {"id": 1.0}, {"id": "1.0"}, {"id": 2}]) == [
        {"id": 1.0},
        {"id": 2},
    ]
    assert recent.snapshot() == ["1", "True", "1.0", "2"]
    assert recent.keep_new([{"id": ["a"]}, {"id": ["a"]}]) == [{"id": ["a"]}]


def test_without_a_snapshot_size_nothing_is_kept_for_snapshots() -> None:
    recent = RecentKeys()
    recent.keep_new([{"id": "a"}, {"id": "b"}])
    assert recent.snapshot() == []
    assert "a" in recent


# Mostly pages of string ids, as the API sends (the set-based path), with the odd page of other keys.
_STRING_IDS = st.lists(st.fixed_dictionaries({"id": st.sampled_from("abcdefghijklmnop")}), max_size=12)
_ODD_RECORDS = st.lists(
    st.one_of(
        st.fixed_dictionaries({"id": st.one_of(st.none(), st.sampled_from("abc"), st.integers(0, 3), st.booleans())}),
        st.just({"other": 1}),
        st.just("scalar"),
    ),
    max_size=12,
)
_PAGES = st.lists(st.one_of(_STRING_IDS, _STRING_IDS, _STRING_IDS, _ODD_RECORDS), max_size=10)


# -- sized in pages ---------------------------------------------------


def page_of(start: int, size: int) -> list[dict[str, str]]:
    return [{"id": str(n)} for n in range(start, start + size)]


def read_pages(memory: RecentKeys, pages: list[list[Any]]) -> list[list[Any]]:
    """What a reader does: keep the new records of each page, then turn the page."""
    kept = []
    for page in pages:
        kept.append(memory.keep_new(page))
        memory.turn_page()
    return kept


@pytest.mark.parametrize("page_size", [10, 1000, 20_000])
def test_the_last_two_pages_are_remembered_whatever_the_page_size(page_size: int) -> None:
    memory = RecentKeys()
    read_pages(memory, [page_of(0, page_size), page_of(page_size, page_size), page_of(2 * page_size, page_size)])

    assert all(str(n) in memory for n in range(page_size, 3 * page_size))
    assert not any(str(n) in memory for n in range(page_size))


@pytest.mark.parametrize("shift", [1, 500, 999, 1000, 1999])
def test_a_page_shifted_by_up_to_two_pages_repeats_nothing(shift: int) -> None:
    memory = RecentKeys()
    first, second = page_of(0, 1000), page_of(1000, 1000)
    shifted = page_of(2000 - shift, 1000)

    kept = read_pages(memory, [first, second, shifted])

    assert kept[2] == [record for record in shifted if int(record["id"]) >= 2000]


def test_a_record_repeated_page_after_page_is_never_emitted_again() -> None:
    # Each page repeats all but one record of the page before: a record stays in view for ten pages.
    pages = [page_of(start, 10) for start in range(30)]

    kept = read_pages(RecentKeys(), pages)

    assert [record["id"] for page in kept for record in page] == [str(n) for n in range(39)]


def test_click_keys_and_record_keys_share_the_pages() -> None:
    memory = RecentKeys()
    assert memory.first_time("click:1") and not memory.first_time("click:1")
    memory.turn_page()
    memory.turn_page()
    assert "click:1" in memory
    memory.turn_page()
    assert "click:1" not in memory


def test_a_checkpoints_keys_count_as_the_page_before() -> None:
    memory = RecentKeys(initial=["a", "b"], snapshot_size=3)

    assert memory.keep_new([{"id": "b"}, {"id": "c"}, {"id": 1}]) == [{"id": "c"}, {"id": 1}]
    assert memory.snapshot() == ["b", "c", "1"]


def test_pages_must_be_positive() -> None:
    with pytest.raises(ValueError, match="pages"):
        RecentKeys(pages=0)


@settings(max_examples=400, deadline=None)
@given(pages=_PAGES)
def test_page_memory_matches_the_exact_model_while_it_remembers_every_page(pages: list[list[Any]]) -> None:
    memory = RecentKeys(pages=len(pages) + 1, snapshot_size=1_000)
    seen: list[str] = []
    for page in pages:
        assert memory.keep_new(list(page)) == reference_keep_new(seen, page)
        memory.turn_page()
    assert memory.snapshot() == seen


@settings(max_examples=400, deadline=None)
@given(pages=_PAGES, remembered=st.integers(1, 3))
def test_page_memory_keep_new_equals_first_time_record_by_record(pages: list[list[Any]], remembered: int) -> None:
    fast, slow = RecentKeys(remembered, snapshot_size=5), RecentKeys(remembered, snapshot_size=5)
    for page in pages:
        one_by_one = [
            record for record in page if slow.first_time(record.get("id") if isinstance(record, dict) else None)
        ]
        assert fast.keep_new(list(page)) == one_by_one
        assert fast.snapshot() == slow.snapshot()
        fast.turn_page()
        slow.turn_page()
        assert all((key in fast) == (key in slow) for key in "abcdefghijklmnop")
