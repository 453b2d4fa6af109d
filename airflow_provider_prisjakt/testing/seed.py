"""
Deterministic seed data of the Prisjakt sandbox (pure functions, no I/O).

Events are never stored. Event ``i`` of a pixel has a time that is
non-decreasing in ``i`` and a body derived by hashing ``(seed, pixel, i)``,
so any event can be produced in O(1) and a time window maps to an index
range by binary search. Event and click ids carry the pixel index and ``i``
in their last twelve hex digits (behind an invertible 48-bit mix), which
lets ``GET /events/{id}`` and ``GET /clicks/{id}`` find the event again.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Currencies of the API, with weights (out of 20) favouring SEK.
_CURRENCY_TABLE: tuple[str, ...] = ("SEK",) * 10 + ("NOK",) * 3 + ("DKK",) * 3 + ("EUR",) * 2 + ("GBP", "NZD")
_MASK48 = (1 << 48) - 1
_I_BITS = 36
_MAX_EVENTS = 1 << _I_BITS
_EVENT_MUL = 0x9E3779B97F4B | 1
_CLICK_MUL = 0xC2B2AE3D27D5 | 1
_EVENT_MUL_INV = pow(_EVENT_MUL, -1, 1 << 48)
_CLICK_MUL_INV = pow(_CLICK_MUL, -1, 1 << 48)
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MAX_CLICK_AGE = 30 * 86400


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=24).digest()


def _uuid4_from(digest: bytes, tail: int | None = None) -> str:
    """Format 16 hash bytes as a UUID4-shaped string, optionally with a fixed 48-bit tail."""
    h = digest[:16].hex()
    variant = "89ab"[int(h[16], 16) & 3]
    last = h[20:32] if tail is None else f"{tail:012x}"
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{last}"


def _token(length: int, *parts: object) -> str:
    key = ":".join(map(str, parts)).encode()
    digest = hashlib.blake2b(key, digest_size=64).digest()
    return "".join(_ALNUM[b % len(_ALNUM)] for b in digest[:length])


def is_uuid(value: str) -> bool:
    """
    Tell whether ``value`` is a lower- or upper-case canonical UUID string.

    :param value: Candidate string.
    :return: ``True`` for a canonical 8-4-4-4-12 hex UUID.
    """
    return bool(_UUID_RE.match(value.lower()))


def format_time(epoch_seconds: int) -> str:
    """
    Format epoch seconds as ``YYYY-MM-DDTHH:MM:SSZ``.

    :param epoch_seconds: Seconds since the epoch, UTC.
    :return: ISO-8601 text with a ``Z`` suffix.
    """
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


def client_credentials(seed: int, name: str) -> tuple[str, str]:
    """
    Derive a deterministic 32-character client id and 30-character secret.

    :param seed: Data seed.
    :param name: Name of the client, e.g. ``"shop_user"``.
    :return: ``(client_id, client_secret)``.
    """
    return _token(32, seed, "client-id", name), _token(30, seed, "client-secret", name)


@dataclass(frozen=True)
class Pixel:
    """
    A seeded pixel.

    :param id: Pixel id (UUID4-shaped).
    :param shop_id: Owning shop.
    :param index: Global index of the pixel (0-based, shops in id order).
    :param name: Display name.
    :param created_at: Creation time, ISO-8601 UTC.
    """

    id: str
    shop_id: int
    index: int
    name: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        """
        Return the API representation.

        :return: ``{"id", "shop_id", "name", "created_at"}``.
        """
        return {
            "id": self.id,
            "shop_id": self.shop_id,
            "name": self.name,
            "created_at": self.created_at,
        }


class SeedData:
    """
    All seeded data of one configuration; cheap to build, holds no events.

    :param seed: Data seed.
    :param shops: Shop id to number of pixels.
    :param events_per_pixel: Seeded events per pixel.
    :param period_start: Start (inclusive) of the event period.
    :param period_end: End (exclusive) of the event period.
    """

    def __init__(
        self,
        seed: int,
        shops: dict[int, int],
        events_per_pixel: int,
        period_start: datetime,
        period_end: datetime,
    ) -> None:
        self.seed = seed
        self.events_per_pixel = events_per_pixel
        self.start = int(period_start.timestamp())
        self.end = int(period_end.timestamp())
        span = max(1, self.end - self.start)
        self._span = span
        self._step = span // events_per_pixel if events_per_pixel else span
        self._masks = {kind: int.from_bytes(_digest(seed, kind, "mask")[:6], "big") for kind in ("event", "click")}
        pixels: list[Pixel] = []
        for shop_id in sorted(shops):
            for n in range(shops[shop_id]):
                digest = _digest(seed, "pixel", shop_id, n)
                created = self.start - 86400 * (30 + digest[20] % 300)
                pixels.append(
                    Pixel(
                        id=_uuid4_from(digest),
                        shop_id=shop_id,
                        index=len(pixels),
                        name=f"Pixel {n + 1} of shop {shop_id}",
                        created_at=format_time(created),
                    )
                )
        self.pixels: tuple[Pixel, ...] = tuple(pixels)
        self.by_id: dict[str, Pixel] = {p.id: p for p in pixels}
        self.shops: dict[int, tuple[Pixel, ...]] = {
            shop_id: tuple(p for p in pixels if p.shop_id == shop_id) for shop_id in sorted(shops)
        }

    # -- event timing -------------------------------------------------------------------

    def event_time(self, pixel: Pixel, i: int) -> int:
        """
        Return the epoch second of event ``i``; non-decreasing in ``i``.

        Seeded events ``i < events_per_pixel`` are spread over the period with a
        jitter smaller than one slot; events added later sit at the last second
        of the period (the newest end).

        :param pixel: The pixel.
        :param i: Event index.
        :return: Epoch seconds.
        """
        n = self.events_per_pixel
        if i >= n:
            return self.end - 1
        base = self.start + (i * self._span) // n
        if self._step <= 1:
            return base
        jitter = int.from_bytes(_digest(self.seed, "jit", pixel.index, i)[:4], "big")
        return base + jitter % self._step

    def index_range(
        self,
        pixel: Pixel,
        count: int,
        lo_ts: float,
        hi_ts: float,
        *,
        lo_open: bool = False,
        hi_closed: bool = False,
    ) -> tuple[int, int]:
        """
        Map a time window to the event index range ``[lo, hi)``.

        :param pixel: The pixel.
        :param count: Number of events the pixel currently has.
        :param lo_ts: Window start, epoch seconds (inclusive unless ``lo_open``).
        :param hi_ts: Window end, epoch seconds (exclusive unless ``hi_closed``).
        :param lo_open: Leave out events exactly at ``lo_ts``.
        :param hi_closed: Take in events exactly at ``hi_ts``.
        :return: ``(lo, hi)`` with ``lo <= hi``.
        """

        def key(i: int) -> int:
            return self.event_time(pixel, i)

        indices = range(count)
        lo = (bisect.bisect_right if lo_open else bisect.bisect_left)(indices, lo_ts, key=key)
        hi = (bisect.bisect_right if hi_closed else bisect.bisect_left)(indices, hi_ts, lo=lo, key=key)
        return lo, hi

    # -- event bodies -------------------------------------------------------------------

    def event_id(self, pixel: Pixel, i: int) -> str:
        """
        Return the id of event ``i``.

        :param pixel: The pixel.
        :param i: Event index.
        :return: UUID4-shaped id whose tail encodes the pixel index and ``i``.
        """
        return self._id(pixel, i, "event", _EVENT_MUL)

    def click_id(self, pixel: Pixel, i: int) -> str:
        """
        Return the id of the click behind event ``i``.

        :param pixel: The pixel.
        :param i: Event index.
        :return: UUID4-shaped id whose tail encodes the pixel index and ``i``.
        """
        return self._id(pixel, i, "click", _CLICK_MUL)

    def _id(self, pixel: Pixel, i: int, kind: str, mul: int) -> str:
        packed = (pixel.index << _I_BITS) | i
        tail = ((packed ^ self._masks[kind]) * mul) & _MASK48
        return _uuid4_from(_digest(self.seed, kind, pixel.index, i), tail)

    def _decode(self, value: str, kind: str, mul_inv: int) -> tuple[Pixel, int] | None:
        if not is_uuid(value):
            return None
        value = value.lower()
        packed = ((int(value[-12:], 16) * mul_inv) & _MASK48) ^ self._masks[kind]
        index, i = packed >> _I_BITS, packed & (_MAX_EVENTS - 1)
        if index >= len(self.pixels):
            return None
        return self.pixels[index], i

    def locate_event(self, event_id: str) -> tuple[Pixel, int] | None:
        """
        Find the pixel and index of an event id (the caller checks the count).

        :param event_id: Event id.
        :return: ``(pixel, i)`` or ``None`` when the id was never issued.
        """
        found = self._decode(event_id, "event", _EVENT_MUL_INV)
        if found is None or self.event_id(*found) != event_id.lower():
            return None
        return found

    def locate_click(self, click_id: str) -> tuple[Pixel, int] | None:
        """
        Find the pixel and event index behind a click id.

        :param click_id: Click id.
        :return: ``(pixel, i)`` or ``None`` when the id was never issued.
        """
        found = self._decode(click_id, "click", _CLICK_MUL_INV)
        if found is None or self.click_id(*found) != click_id.lower():
            return None
        return found

    def purchase(self, pixel: Pixel, i: int) -> tuple[str, int]:
        """
        Return ``(currency, amount in cents)`` of event ``i`` without building it.

        :param pixel: The pixel.
        :param i: Event index.
        :return: Currency code and amount in hundredths.
        """
        d = _digest(self.seed, "event", pixel.index, i)
        return _CURRENCY_TABLE[d[16] % 20], 1000 + int.from_bytes(d[17:20], "big") % 499001

    def event(self, pixel: Pixel, i: int, with_pixel_id: bool = False) -> dict[str, Any]:
        """
        Build the API representation of event ``i``.

        :param pixel: The pixel.
        :param i: Event index.
        :param with_pixel_id: Add ``pixel_id``, a member the reference does not document.
        :return: The event dict exactly as the API returns it.
        """
        d = _digest(self.seed, "event", pixel.index, i)
        order = int.from_bytes(d[20:24], "big")
        order_text = "".join(_BASE36[(order // 36**k) % 36] for k in range(6))
        pixel_member = {"pixel_id": pixel.id} if with_pixel_id else {}
        return {
            "id": self.event_id(pixel, i),
            **pixel_member,
            "click_id": self.click_id(pixel, i),
            "external_event_id": f"order-{order_text}",
            "event_name": "purchase",
            "event_time": format_time(self.event_time(pixel, i)),
            "data": {
                "amount": (1000 + int.from_bytes(d[17:20], "big") % 499001) / 100,
                "currency": _CURRENCY_TABLE[d[16] % 20],
                "number_of_items": 1 + d[8] % 5,
            },
        }

    def click(self, pixel: Pixel, i: int, candidates_only: bool = False) -> dict[str, Any]:
        """
        Build the click behind event ``i``.

        :param pixel: The pixel.
        :param i: Event index.
        :param candidates_only: Keep only the members the reference names as inferred
            candidates (``id``, ``shop_id``, ``clicked_at``, ``product_id``, ``offer_id``).
        :return: The click dict exactly as the API returns it.
        """
        d = _digest(self.seed, "click", pixel.index, i)
        age = 60 + int.from_bytes(d[16:20], "big") % (_MAX_CLICK_AGE - 60 + 1)
        currency, _ = self.purchase(pixel, i)
        click: dict[str, Any] = {
            "id": self.click_id(pixel, i),
            "pixel_id": pixel.id,
            "shop_id": pixel.shop_id,
            "clicked_at": format_time(self.event_time(pixel, i) - age),
            "product_id": 1_000_000 + int.from_bytes(d[20:23], "big") % 9_000_000,
            "offer_id": f"offer-{d[23]:03d}{int.from_bytes(d[8:10], 'big'):05d}",
            "cost": (50 + int.from_bytes(d[10:12], "big") % 1451) / 100,
            "currency": currency,
        }
        if candidates_only:
            return {k: v for k, v in click.items() if k not in ("pixel_id", "cost", "currency")}
        return click

    def events_desc(
        self, pixel: Pixel, lo: int, hi: int, offset: int, limit: int, with_pixel_id: bool = False
    ) -> list[dict[str, Any]]:
        """
        Return one page of the index range ``[lo, hi)``, newest first.

        :param pixel: The pixel.
        :param lo: First index of the window.
        :param hi: End index of the window (exclusive).
        :param offset: Number of newest events to skip.
        :param limit: Page size.
        :param with_pixel_id: Add ``pixel_id`` to each event, see :meth:`event`.
        :return: Event dicts.
        """
        top = hi - 1 - offset
        bottom = max(lo, top - limit + 1)
        return [self.event(pixel, i, with_pixel_id) for i in range(top, bottom - 1, -1)]

    def purchase_summary(self, pixel: Pixel, lo: int, hi: int) -> list[dict[str, Any]]:
        """
        Aggregate the events ``[lo, hi)`` per currency.

        :param pixel: The pixel.
        :param lo: First index.
        :param hi: End index (exclusive).
        :return: ``[{"currency", "count", "total_amount"}]`` sorted by currency.
        """
        counts: dict[str, int] = {}
        cents: dict[str, int] = {}
        for i in range(lo, hi):
            currency, amount = self.purchase(pixel, i)
            counts[currency] = counts.get(currency, 0) + 1
            cents[currency] = cents.get(currency, 0) + amount
        return [
            {
                "currency": c,
                "count": counts[c],
                "total_amount": round(cents[c] / 100, 2),
            }
            for c in sorted(counts)
        ]


def parse_time(text: str) -> datetime | None:
    """
    Parse an ISO-8601 date-time (``Z`` or offset) or a date; naive values are UTC.

    :param text: Query parameter value.
    :return: Aware datetime, or ``None`` when ``text`` is not ISO-8601.
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
