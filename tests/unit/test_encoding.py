"""raw_json and record_line: msgspec writes records byte for byte as the standard library's json.dumps did."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.api import encoding
from airflow_provider_prisjakt.api.decoding import decode_json
from airflow_provider_prisjakt.api.encoding import raw_json, record_line


def json_dumps(value: Any) -> str:
    """The form ``raw`` had before msgspec wrote it: the reference."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str, ensure_ascii=False)


_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)),  # every code point but lone surrogates
    max_size=12,
) | st.sampled_from(["", "\x00\x1f\x7f", '"\\/', "\b\f\n\r\t", "\u2028\u2029", "ÅÄÖ €", "\U0001f600", "\ufeff"])
_FLOATS = st.floats() | st.sampled_from(
    [0.0, -0.0, 1e-4, 9.9999e-5, 1e-5, 1.5e-7, 1e16, 9999999999999998.0, 1e22, 5e-324, 1.7976931348623157e308]
)
_INTEGERS = st.integers() | st.integers(min_value=2**63 - 2, max_value=2**70) | st.integers(max_value=-(2**63) + 1)
_JSON = st.recursive(
    st.none() | st.booleans() | _INTEGERS | _FLOATS | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=600, deadline=None)
@given(record=st.dictionaries(_TEXT, _JSON, max_size=6))
def test_every_json_value_is_written_as_json_dumps_writes_it(record: dict[str, Any]) -> None:
    expected = json_dumps(record)

    assert raw_json(record) == expected
    assert record_line(record) == expected.encode()


@settings(max_examples=200, deadline=None)
@given(record=st.dictionaries(_TEXT, _JSON, max_size=6))
def test_a_decoded_record_is_written_as_json_dumps_writes_it(record: dict[str, Any]) -> None:
    # What the decoder gives back from the API's bytes (NaN and infinities included), not only Python values.
    decoded = decode_json(json.dumps(record).encode())

    assert record_line(decoded) == json_dumps(decoded).encode()


@pytest.mark.parametrize(
    "value",
    [1e16, 1.5e-7, 1e-5, 1e22, float("nan"), float("inf"), -float("inf")],
    ids=["1e16", "1.5e-7", "1e-5", "1e22", "nan", "inf", "-inf"],
)
def test_floats_msgspec_spells_otherwise_keep_pythons_spelling(value: float) -> None:
    record = {"data": {"amount": value}, "id": "a"}

    assert raw_json(record) == json_dumps(record)
    assert ("e+" in raw_json(record) or "e-" in raw_json(record)) == math.isfinite(value)


class Color(StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 10, 1, 12, tzinfo=UTC),
        datetime(2026, 10, 1, 12),
        date(2026, 10, 1),
        Decimal("1.50"),
        Decimal("NaN"),
        (1, "a"),
        Color.RED,
        b"bytes",
        True,
        {"nested": [datetime(2026, 10, 1, tzinfo=UTC)]},
    ],
)
def test_python_values_that_decoding_never_gives_are_written_as_default_str_writes_them(value: Any) -> None:
    record = {"value": value, "other": 1}

    assert raw_json(record) == json_dumps(record)
    assert record_line(record) == json_dumps(record).encode()


@pytest.mark.parametrize("record", [{1: "a", 10: "b", 2: "c"}, {"a": {2: 1, 1.5: 2, False: 3}}])
def test_member_names_that_are_not_text_are_written_as_json_dumps_writes_them(record: dict[Any, Any]) -> None:
    assert raw_json(record) == json_dumps(record)


def test_a_record_whose_names_json_dumps_cannot_sort_fails_as_before() -> None:
    with pytest.raises(TypeError):
        raw_json({"a": 1, 2: 3})


def test_a_lone_surrogate_is_kept_in_raw_text_and_refused_as_utf8_bytes() -> None:
    record = decode_json(b'{"name": "\\ud800"}')

    assert raw_json(record) == json_dumps(record)
    with pytest.raises(UnicodeEncodeError):
        record_line(record)  # as the text file refused it when the line was written


def test_a_mapping_that_is_not_a_dict_is_written_as_json_dumps_writes_it() -> None:
    from types import MappingProxyType

    record = MappingProxyType({"a": 1})

    assert raw_json(record) == json_dumps(record)


def test_an_api_event_is_written_by_msgspec(monkeypatch: pytest.MonkeyPatch) -> None:
    event = {
        "id": "73fde86c-e2e3-490e-9187-5679a7947879",
        "click_id": None,
        "external_event_id": "order-D65GRR",
        "event_name": "purchase",
        "event_time": "2026-10-31T23:50:28Z",
        "data": {"amount": 2787.41, "currency": "SEK", "number_of_items": 5, "items": [{"sku": "Å-1"}]},
    }
    expected = json_dumps(event)

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("the standard library wrote a plain API record")

    monkeypatch.setattr(encoding.json, "dumps", refuse)

    assert raw_json(event) == expected
    assert record_line(event) == expected.encode()
