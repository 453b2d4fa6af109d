"""
Flat-memory de-duplication of records that shifting pages repeat: :class:`PageMemory` (the
readers', sized in pages) and :class:`RecentKeys` (sized in keys).

Pure: no I/O, no Airflow.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any


def _key_text(key: Any) -> str:
    """A record key as text, the form :class:`RecentKeys` compares and checkpoints store."""
    return key if type(key) is str else str(key)


#: How many pages of record ids the de-duplication memory holds besides the page being read.
PAGES_REMEMBERED = 2


class PageMemory:
    """
    The keys of the records of the last pages read, to drop records that shifting pages repeat.

    The API's pages are not stable: events arriving while a client pages push records of one page
    onto the start of the next. The memory holds the keys of the page being read and of the
    :data:`PAGES_REMEMBERED` pages before it, whatever the page size, so such repeats are dropped
    while memory stays flat however long the export. Keys are compared as text (``1`` and ``"1"``
    are one key), as checkpoints store them.

    :param pages: how many finished pages are remembered besides the current one.
    :param initial: keys already seen, oldest first (e.g. from a checkpoint); they count as one page.
    :param snapshot_size: how many of the latest keys :meth:`snapshot` returns (for checkpoints).
    """

    def __init__(self, pages: int = PAGES_REMEMBERED, initial: Iterable[Any] = (), snapshot_size: int = 0) -> None:
        if pages < 1:
            raise ValueError(f"pages must be at least 1, not {pages}")
        self._pages: deque[set[str]] = deque([set()], maxlen=pages + 1)
        self._latest: deque[str] = deque(maxlen=snapshot_size)
        initial = list(initial)
        if initial:
            self.keep_new([{"id": key} for key in initial])
            self.turn_page()

    def __contains__(self, key: object) -> bool:
        text = _key_text(key)
        return any(text in page for page in self._pages)

    def turn_page(self) -> None:
        """Start a new page; the oldest remembered page is forgotten."""
        self._pages.append(set())

    def first_time(self, key: Any) -> bool:
        """
        Return True unless ``key`` is remembered; ``None`` is always new.

        Either way the key counts as seen on the current page: a record repeated on this page is
        as likely to show up again on the next one as any other record of this page.
        """
        if key is None:
            return True
        text = _key_text(key)
        current = self._pages[-1]
        if text in current:
            return False
        new = text not in self
        current.add(text)
        if new:
            self._latest.append(text)
        return new

    def keep_new(self, records: list[Any], key_field: str = "id") -> list[Any]:
        """
        Return the records whose key is not remembered, in order, and remember their keys.

        A record that is not an object, or has no key, is always kept. When every record is new
        (the usual case, checked with set operations), ``records`` itself is returned.
        """
        try:
            keys = [record[key_field] for record in records]
        except (KeyError, TypeError, IndexError):
            keys = []
        if keys and set(map(type, keys)) == {str}:
            distinct = set(keys)
            if len(distinct) == len(keys) and all(distinct.isdisjoint(page) for page in self._pages):
                self._pages[-1].update(distinct)
                if self._latest.maxlen:
                    self._latest.extend(keys)
                return records
        first_time = self.first_time
        return [
            record for record in records if first_time(record.get(key_field) if isinstance(record, Mapping) else None)
        ]

    def snapshot(self) -> list[str]:
        """Return the latest ``snapshot_size`` keys, oldest first."""
        return list(self._latest)


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
