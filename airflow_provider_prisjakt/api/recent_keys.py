"""
RecentKeys: a flat-memory de-duplication of records that shifting pages repeat.

Pure: no I/O, no Airflow.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any


def _key_text(key: Any) -> str:
    """A record key as text, the form :class:`RecentKeys` compares and checkpoints store."""
    return key if type(key) is str else str(key)


class RecentKeys:
    """
    A bounded memory of the most recent record keys, to drop records repeated by shifting pages.

    The API's pages are not stable: events arriving while a client pages shift later pages, so a
    few records of one page show up again at the start of the next. Remembering the recent keys
    catches those repeats with memory that stays flat however long the export.

    Keys are compared as text (``1`` and ``"1"`` are the same key), as checkpoints store them. They
    are kept in two generations: when the newer one reaches ``capacity`` keys it becomes the older
    one, and the previous older one is forgotten. So the last ``capacity`` keys are always
    remembered, and never more than twice that.

    :param capacity: how many of the most recent keys are always remembered.
    :param initial: keys already seen (e.g. from a checkpoint), oldest first.
    :param snapshot_size: how many of the latest keys :meth:`snapshot` returns (for checkpoints).
    """

    def __init__(self, capacity: int, initial: Iterable[Any] = (), snapshot_size: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._older: set[str] = set()
        self._newer: set[str] = set()
        self._latest: deque[str] = deque(maxlen=snapshot_size)
        for key in initial:
            self.first_time(key)

    def __contains__(self, key: object) -> bool:
        text = _key_text(key)
        return text in self._newer or text in self._older

    def _rotate_if_full(self) -> None:
        if len(self._newer) >= self.capacity:
            self._older, self._newer = self._newer, set()

    def _remember_new(self, keys: list[str]) -> None:
        """Remember distinct, unseen keys in order, rotating exactly where one by one would."""
        start = 0
        while start < len(keys):
            room = self.capacity - len(self._newer)
            chunk = keys[start : start + room]
            self._newer.update(chunk)
            start += len(chunk)
            self._rotate_if_full()
        self._latest.extend(keys)

    def first_time(self, key: Any) -> bool:
        """Return True and remember ``key`` unless it was seen recently; ``None`` is always new."""
        if key is None:
            return True
        text = _key_text(key)
        if text in self._newer or text in self._older:
            return False
        self._newer.add(text)
        self._latest.append(text)
        self._rotate_if_full()
        return True

    def keep_new(self, records: list[Any], key_field: str = "id") -> list[Any]:
        """
        Return the records whose key was not seen recently, in order, and remember their keys.

        A record that is not an object, or has no key, is always kept. A page whose keys are
        distinct strings, all new (the usual case), is checked with set operations rather than
        record by record; the result is the same either way. When every record is new,
        ``records`` itself is returned.

        :param records: the records of one page.
        :param key_field: the member holding each record's key.
        """
        try:
            keys = [record[key_field] for record in records]
        except (KeyError, TypeError, IndexError):
            keys = []
        if keys and set(map(type, keys)) == {str}:
            distinct = set(keys)
            if len(distinct) == len(keys) and distinct.isdisjoint(self._newer) and distinct.isdisjoint(self._older):
                self._remember_new(keys)
                return records
        first_time = self.first_time
        return [
            record for record in records if first_time(record.get(key_field) if isinstance(record, Mapping) else None)
        ]

    def snapshot(self) -> list[str]:
        """Return the latest ``snapshot_size`` keys remembered, oldest first."""
        return list(self._latest)
