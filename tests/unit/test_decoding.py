"""decode_json: the JSON decoder of API bodies reads exactly what the standard library reads."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.api.decoding import decode_json

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 2]))
def test_decodes_every_standard_document_as_json_loads(value: Any, ensure_ascii: bool, indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
    assert decode_json(text.encode()) == json.loads(text)
    assert decode_json(text) == json.loads(text)


def test_keeps_big_integers_and_the_last_of_repeated_members() -> None:
    assert decode_json(b'{"n": 123456789012345678901234567890, "a": 1, "a": 2}') == {
        "n": 123456789012345678901234567890,
        "a": 2,
    }


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbf[1]",  # a UTF-8 byte order mark
        '{"a": [1]}'.encode("utf-16"),
        '{"a": [1]}'.encode("utf-32-be"),
        b'["\\ud800"]',  # a lone surrogate escape
        b"[1e400, -1e400]",
        b"[Infinity, -Infinity]",
    ],
)
def test_documents_msgspec_refuses_are_read_as_json_loads_reads_them(content: bytes) -> None:
    assert decode_json(content) == json.loads(content)


def test_nan_is_read_as_json_loads_reads_it() -> None:
    value = decode_json(b"[NaN]")
    assert len(value) == 1 and math.isnan(value[0])


@pytest.mark.parametrize(
    "content", [b"", b"{", b'{"a": 1', b"[1,]", b'"\xe9"', b"<html>502</html>", b'{"a": 1} trailing']
)
def test_rejects_what_is_not_json_with_a_value_error(content: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(content)
    with pytest.raises(ValueError):
        decode_json(content)
