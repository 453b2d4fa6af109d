"""Paging cursors and RFC 8288 ``Link`` headers of the Prisjakt sandbox."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing.config import SandboxConfig

#: Origin used by ``link_mode="foreign"`` (TEST-NET-3, never routable).
FOREIGN_ORIGIN = "http://203.0.113.9"


def encode_cursor(offset: int) -> str:
    """
    Encode a page offset as an opaque cursor.

    :param offset: Number of items before the page.
    :return: URL-safe cursor text.
    """
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """
    Decode a cursor made by :func:`encode_cursor`.

    :param cursor: Cursor text from the query string.
    :return: The offset, or ``None`` when the cursor is not valid.
    """
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not text.startswith("o:") or not text[2:].isdigit():
        return None
    return int(text[2:])


def link_header(
    config: SandboxConfig,
    origin: str,
    path: str,
    params: dict[str, str],
    offset: int,
    limit: int,
    total: int,
) -> list[str]:
    """
    Build the ``Link`` header field values of one page.

    :param config: Live configuration (link style, rel case, link mode, link syntax).
    :param origin: Advertised origin, e.g. ``http://127.0.0.1:8765``.
    :param path: Request path, e.g. ``/click-conversion/pixels/<id>/events``.
    :param params: Query parameters every page URL keeps (without the cursor).
    :param offset: Offset of the page served.
    :param limit: Page size.
    :param total: Number of items in the whole listing.
    :return: One value per ``Link`` header field to send: none when a single page
        holds everything, one per link with ``link_split``, otherwise one.
    """
    if offset == 0 and total <= limit:
        return []
    last_offset = max(0, (total - 1) // limit * limit)

    def url(page_offset: int, base: str | None = None) -> str:
        query = dict(params)
        if page_offset:
            query["cursor"] = encode_cursor(page_offset)
        target = f"{path}?{urlencode(query)}"
        if base is not None:
            return base + target
        if config.link_style == "absolute":
            return origin + target
        if config.link_style == "path":
            return target
        return target.rsplit("/", 1)[1]

    def rel(*names: str) -> str:
        return " ".join(name.upper() if config.rel_case == "upper" else name for name in names)

    if config.link_mode == "malformed":
        return [f"<{url(offset + limit)}; rel={rel('next')}, garbage<<;;"]
    # (target, relation, offset of the page it points to)
    links: list[tuple[str, str, int]] = [(url(0), rel("first"), 0)]
    if offset > 0:
        links.append((url(max(0, offset - limit)), rel("prev"), max(0, offset - limit)))
    next_offset = offset + limit
    combined = False
    if next_offset < total:
        next_url = url(next_offset)
        if config.link_mode == "foreign":
            next_url = url(next_offset, FOREIGN_ORIGIN)
        elif config.link_mode == "loop" and offset == limit:
            next_url = url(offset)
        combined = config.combined_rels and next_offset == last_offset and config.link_mode == "normal"
        links.append((next_url, rel("next", "last") if combined else rel("next"), next_offset))
    if not combined:
        links.append((url(last_offset), rel("last"), last_offset))
    values = [link_value(config, target, relation, page_offset // limit + 1) for target, relation, page_offset in links]
    return values if config.link_split else [", ".join(values)]


def link_value(config: SandboxConfig, target: str, relation: str, page: int) -> str:
    """
    Write one link-value (RFC 8288) in the configured syntax.

    :param config: Live configuration (``link_unquoted_rel``, ``link_extra_params``).
    :param target: The link's URI reference.
    :param relation: Its relation type(s), space-separated.
    :param page: Number (from 1) of the page the link points to, named in the extra ``title``.
    :return: ``<target>; rel="relation"`` or a variant of it.
    """
    # Several relation types need quotes (a token cannot hold a space).
    unquoted = config.link_unquoted_rel and " " not in relation
    rel_param = f"rel={relation}" if unquoted else f'rel="{relation}"'
    if config.link_extra_params:
        return f'<{target}>; title="events, page {page}"; {rel_param}; type="application/json"'
    return f"<{target}>; {rel_param}"
