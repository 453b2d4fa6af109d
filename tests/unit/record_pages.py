"""Hypothesis strategies for pages of records whose times come in every form a server (or worse) may send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

from hypothesis import strategies as st

OFFSETS = [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
#: Forms with a UTC offset, the API's own (``Z``, whole seconds) most often.
AWARE_FORMS = ["z", "z", "z", "z_millis", "z_micros", "offset"]
#: Forms read record by record: readable without an offset, or not readable at all.
OTHER_FORMS = ["space", "naive", "date", "datetime", "junk", "month", "word", "none"]
#: Record shapes besides a plain object: one without the time, a read-only mapping, and a list.
ODD_SHAPES = ["missing", "proxy", "list"]


def render(moment: datetime, form: str) -> Any:
    """Write ``moment`` in ``form``: the API's own, other offsets and precisions, or worse."""
    utc = moment.astimezone(UTC)
    if form == "z":
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == "z_millis":
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if form == "z_micros":
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if form == "offset":
        return moment.isoformat()  # +00:00, +02:00, -05:30
    if form == "space":
        return utc.strftime("%Y-%m-%d %H:%M:%SZ")
    if form == "naive":
        return utc.replace(tzinfo=None).isoformat()
    if form == "date":
        return utc.date().isoformat()
    if form == "datetime":
        return moment
    return {"junk": "2026-02-30T00:00:00Z", "month": "2026-13-01T00:00:00Z", "word": "soon", "none": None}[form]


@st.composite
def records(draw: st.DrawFn, moments: st.SearchStrategy[datetime], forms: list[str], shapes: list[str]) -> Any:
    """A record: an object with an ``id`` and an ``event_time`` at one of ``moments``, written in one of ``forms``."""
    moment = draw(moments).astimezone(draw(st.sampled_from(OFFSETS)))
    record: dict[str, Any] = {"id": draw(st.uuids()).hex, "event_time": render(moment, draw(st.sampled_from(forms)))}
    shape = draw(st.sampled_from(shapes))
    if shape == "missing":
        del record["event_time"]
    if shape == "proxy":
        return MappingProxyType(record)
    if shape == "list":
        return list(record.values())
    return record


def pages(moments: st.SearchStrategy[datetime], *, usual: bool) -> st.SearchStrategy[list[Any]]:
    """
    Pages of records at ``moments``: ``usual`` ones (objects whose times have an offset, at least one
    record), or any (every form and shape, often an object with an offset still, empty too).
    """
    if usual:
        return st.lists(records(moments, AWARE_FORMS, ["dict"]), min_size=1, max_size=40)
    shapes = ["dict"] * 3 + ODD_SHAPES
    return st.one_of(
        st.lists(records(moments, AWARE_FORMS, ["dict"]), max_size=40),
        st.lists(records(moments, AWARE_FORMS + OTHER_FORMS, shapes), max_size=40),
    )
