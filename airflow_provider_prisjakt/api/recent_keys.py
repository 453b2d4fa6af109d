"""
Flat-memory de-duplication of records that shifting pages repeat: :class:`RecentKeys`, the ids of
the last pages read, whatever the page size.

Pure: no I/O, no Airflow.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any


def _key_text(key: Any) -> str:
    """A record key as text, the form :class:`RecentKeys` compares and checkpoints store."""
    return key if type(key) is str else str(key)


#: How many pages of record ids the de-duplication memory holds besides the page being read.
PAGES_REMEMBERED = 2


class RecentKeys:
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
            keys = list(map(itemgetter(key_field), records))
        except (KeyError, TypeError, IndexError):
            keys = []
        if keys and set(map(type, keys)) == {str}:
            distinct = set(keys)
            if len(distinct) == len(keys) and all(distinct.isdisjoint(page) for page in self._pages):
                if self._pages[-1]:
                    self._pages[-1].update(distinct)
                else:  # the page's first records, as usual: the set is taken, not copied
                    self._pages[-1] = distinct
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
