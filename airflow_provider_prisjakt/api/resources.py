"""
What can be exported from the Prisjakt API: each resource's columns, primary key and window rule.

Pure: no I/O, no Airflow. The export loop turns each page of records into flat, typed columns
with :meth:`Resource.column_values` (their kinds and readers are in
:mod:`~airflow_provider_prisjakt.api.columns`); writers and SQL sinks take their columns from here.
Purchase summaries, whose shape the API reference leaves open, are read in every plausible shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_provider_prisjakt.api.columns import Column, ColumnKind, read_decimal, read_flag, read_integer
from airflow_provider_prisjakt.api.encoding import raw_json
from airflow_provider_prisjakt.api.windows import TimeLike, format_api_time, is_day_complete, to_utc

RAW_COLUMN = "raw"
EXTRACTED_AT_COLUMN = "_extracted_at"


#: Member names a purchase summary entry may use for its currency, purchase count and total value.
SUMMARY_CURRENCY_MEMBERS = ("currency", "currency_code")
SUMMARY_COUNT_MEMBERS = ("count", "purchases")
SUMMARY_AMOUNT_MEMBERS = ("total_amount", "total", "amount", "sum", "revenue")
_SUMMARY_LIST_MEMBER = "currencies"  # the likeliest holder of the entries, when a wrapper holds several
_SUMMARY_MAX_DEPTH = 2


class UnreadableSummaryError(ValueError):
    """A purchase summary in a shape that cannot be read."""


def summary_member(entry: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    """Return the value of the first of ``names`` that ``entry`` has (``None`` when it has none)."""
    return next((entry[name] for name in names if name in entry), None)


def _is_summary_entry(value: Any) -> bool:
    return isinstance(value, Mapping) and any(name in value for name in SUMMARY_COUNT_MEMBERS + SUMMARY_AMOUNT_MEMBERS)


def _has_currency(entry: Mapping[str, Any]) -> bool:
    return summary_member(entry, SUMMARY_CURRENCY_MEMBERS) not in (None, "")


def _members_seen(body: Any) -> str:
    if isinstance(body, Mapping):
        names = ", ".join(sorted(str(key) for key in body)[:12])
        return f"members {names}" if names else "no members"
    if isinstance(body, list):
        first = body[0] if body else None
        inner = f" of {_members_seen(first)}" if isinstance(first, Mapping) else ""
        return f"a list of {len(body)} item(s){inner}"
    return "null" if body is None else f"a JSON {type(body).__name__}"


def _find_entries(body: Any, depth: int) -> list[Mapping[str, Any]] | None:
    """Return the entries of a (possibly wrapped) summary, or ``None`` when ``body`` holds none."""
    if isinstance(body, list):
        return body if all(isinstance(item, Mapping) for item in body) else None
    if not isinstance(body, Mapping):
        return None
    if _is_summary_entry(body) and _has_currency(body):
        return [body]  # a one-currency summary
    keyed = {key: value for key, value in body.items() if _is_summary_entry(value)}
    if keyed and all(len(str(key)) == 3 and str(key).isalpha() for key in keyed):
        return [value if _has_currency(value) else {"currency": key, **value} for key, value in keyed.items()]
    if depth >= _SUMMARY_MAX_DEPTH:
        return None
    found = {key: _find_entries(value, depth + 1) for key, value in body.items() if isinstance(value, list | Mapping)}
    filled = {key: entries for key, entries in found.items() if entries}
    if len(filled) > 1 and filled.get(_SUMMARY_LIST_MEMBER):
        return filled[_SUMMARY_LIST_MEMBER]
    if len(filled) == 1:
        return next(iter(filled.values()))
    if not filled and (not body or [] in found.values() or body.get(_SUMMARY_LIST_MEMBER, 0) is None):
        return []  # a day without purchases
    return None


def summary_entries(body: Any) -> list[Mapping[str, Any]]:
    """
    Return each currency's entry of a purchase summary, as the server sent it.

    Accepted shapes: a bare list of entries; a list under any wrapper member, one or two levels
    down (``currencies`` wins when there are several); an object keyed by currency (the key is
    added as ``currency`` when the entry lacks one); a single entry. An entry names its currency
    (:data:`SUMMARY_CURRENCY_MEMBERS`) and its count or total (:data:`SUMMARY_COUNT_MEMBERS`,
    :data:`SUMMARY_AMOUNT_MEMBERS`). An empty list, a null ``currencies`` or ``{}`` is a day
    without purchases.

    :raises UnreadableSummaryError: naming the members seen, when the shape cannot be read.
    """
    entries = _find_entries(body, 0)
    expected = "currency with count or total_amount"
    if entries is None:  # one error naming what was there, rather than a KeyError deep in the export
        raise UnreadableSummaryError(
            f"Could not read the purchase summary: expected entries of {expected}, as a list (bare or "
            f"wrapped) or an object keyed by currency; the response held {_members_seen(body)}"
        )
    for entry in entries:
        if not (_has_currency(entry) and _is_summary_entry(entry)):
            raise UnreadableSummaryError(
                f"Could not read a purchase summary entry: expected {expected}; it had {_members_seen(entry)}"
            )
    return entries


def _amount(value: Any) -> int | float | None:
    """A total as a JSON-safe number: numbers as sent, numeric strings as floats."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    number = read_decimal(value)
    return float(number) if number is not None and number.is_finite() else None


def normalise_purchase_summary(body: Any, start: TimeLike, end: TimeLike) -> dict[str, Any]:
    """
    Return a purchase summary in one shape, whatever the server sent (see :func:`summary_entries`).

    :param body: the decoded response.
    :param start: the requested window's start, returned as ``from``; ``end`` is returned as ``to``.
    :return: ``{"from", "to", "currencies": [{"currency", "count", "total_amount"}]}``, by currency.
    :raises UnreadableSummaryError: when the shape cannot be read.
    """
    currencies = [
        {
            "currency": str(summary_member(entry, SUMMARY_CURRENCY_MEMBERS)),
            "count": read_integer(summary_member(entry, SUMMARY_COUNT_MEMBERS)),
            "total_amount": _amount(summary_member(entry, SUMMARY_AMOUNT_MEMBERS)),
        }
        for entry in summary_entries(body)
    ]
    return {
        "from": format_api_time(to_utc(start, "start")),
        "to": format_api_time(to_utc(end, "end")),
        "currencies": sorted(currencies, key=lambda entry: entry["currency"]),
    }


def purchase_summary_records(
    body: Any, pixel_id: str, day_start: datetime, day_end: datetime, now: datetime
) -> list[dict[str, Any]]:
    """
    Return the records of one pixel's summary of one UTC day, for :data:`PURCHASE_SUMMARY` rows.

    Each record is the entry as the server sent it (so ``raw`` keeps it whole), with ``pixel_id``,
    ``day``, ``from``, ``to``, ``currency`` and ``complete`` (whether the day was over at ``now``).

    :raises UnreadableSummaryError: when the shape cannot be read.
    """
    stamp = {
        "pixel_id": pixel_id,
        "day": day_start.date().isoformat(),
        "from": format_api_time(day_start),
        "to": format_api_time(day_end),
        "complete": is_day_complete(day_start, now),
    }
    return [
        {**entry, "currency": summary_member(entry, SUMMARY_CURRENCY_MEMBERS), **stamp}
        for entry in summary_entries(body)
    ]


@dataclass(frozen=True)
class Resource:
    """
    An exportable kind of data.

    :param name: the ``resource`` argument of the operators.
    :param columns: the typed, flattened columns, before ``raw`` and ``_extracted_at``.
    :param primary_key: the columns identifying a row, for merges and de-duplication.
    :param window_column: the column that places a row in a window (for ``replace_window``), or
        ``None`` when rows do not belong to a time window.
    :param scope_column: the column holding the target a row was read for (the pixel), which
        ``replace_window`` and partitioned layouts use; ``None`` for shop-scoped resources.
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    window_column: str | None
    scope_column: str | None = "pixel_id"
    _getters: tuple[Callable[[Mapping[str, Any]], Any], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_getters", tuple(column.getter() for column in self.columns))

    def extract(self, record: Mapping[str, Any]) -> tuple[Any, ...]:
        """Return the values of :attr:`columns` read from an API record."""
        return tuple([get(record) for get in self._getters])

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

    def column_values(self, records: Sequence[Mapping[str, Any]], extracted_at: datetime) -> list[list[Any]]:
        """Flatten a page of API records to the values of :attr:`all_columns`, column by column."""
        typed = [column.values(records) for column in self.columns]
        return [*typed, [raw_json(record) for record in records], [extracted_at] * len(records)]

    def to_row(self, record: Mapping[str, Any], extracted_at: datetime) -> tuple[Any, ...]:
        """Flatten one API record to a row of :attr:`all_columns` (pages go through :meth:`column_values`)."""
        return tuple(values[0] for values in self.column_values([record], extracted_at))


EVENTS = Resource(
    name="events",
    columns=(
        Column("event_id", ColumnKind.STRING, nullable=False, source=("id",)),
        Column("pixel_id", ColumnKind.STRING),
        Column("click_id", ColumnKind.STRING),
        Column("external_event_id", ColumnKind.STRING),
        Column("event_name", ColumnKind.STRING),
        Column("event_time", ColumnKind.TIMESTAMP),
        Column("amount", ColumnKind.DECIMAL, source=("data.amount",)),
        Column("currency", ColumnKind.STRING, source=("data.currency",)),
        Column("number_of_items", ColumnKind.INTEGER, source=("data.number_of_items",)),
    ),
    primary_key=("event_id",),
    window_column="event_time",
)

PURCHASE_SUMMARY = Resource(
    name="purchase_summary",
    columns=(
        Column("pixel_id", ColumnKind.STRING, nullable=False),
        Column("day", ColumnKind.DATE, nullable=False),
        Column("currency", ColumnKind.STRING, nullable=False, source=SUMMARY_CURRENCY_MEMBERS),
        Column("purchases", ColumnKind.INTEGER, source=SUMMARY_COUNT_MEMBERS),
        Column("total_amount", ColumnKind.DECIMAL, source=SUMMARY_AMOUNT_MEMBERS),
        # 1 when the day was over when read; 0 for today's partial count, which a later run replaces.
        Column("complete", ColumnKind.INTEGER, read=read_flag),
    ),
    primary_key=("pixel_id", "day", "currency"),
    window_column="day",
)

CLICKS = Resource(
    name="clicks",
    columns=(
        Column("click_id", ColumnKind.STRING, nullable=False, source=("id",)),
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
)

PIXELS = Resource(
    name="pixels",
    columns=(
        Column("pixel_id", ColumnKind.STRING, nullable=False, source=("id",)),
        Column("shop_id", ColumnKind.INTEGER),
        Column("name", ColumnKind.STRING),
        Column("created_at", ColumnKind.TIMESTAMP),
    ),
    primary_key=("pixel_id",),
    window_column=None,
    scope_column=None,
)

RESOURCES: dict[str, Resource] = {resource.name: resource for resource in (EVENTS, PURCHASE_SUMMARY, CLICKS, PIXELS)}


def get_resource(name: str) -> Resource:
    """Return the resource called ``name``, or raise ``ValueError`` listing the valid names."""
    try:
        return RESOURCES[name]
    except KeyError:
        raise ValueError(f"resource must be one of {', '.join(RESOURCES)}, got {name!r}") from None
