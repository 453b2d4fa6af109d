"""
Endpoints of the sandboxed Click and Conversion API (transport-free).

:func:`route` turns a parsed request into a :class:`Reply`; the HTTP server in
:mod:`airflow_provider_prisjakt.testing.server` adds rate limiting, faults and
the wire format around it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from airflow_provider_prisjakt.testing.bounds import ServedWindow, served_window, window_error
from airflow_provider_prisjakt.testing.links import decode_cursor, link_header
from airflow_provider_prisjakt.testing.seed import Pixel, is_uuid, parse_time
from airflow_provider_prisjakt.testing.shapes import list_body, summary_body
from airflow_provider_prisjakt.testing.state import (
    SandboxState,
    basic_credentials,
    bearer_token,
)

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing.config import SandboxClient, SandboxConfig

#: Path prefix of the API, as in ``https://api.pj.nu/click-conversion``.
API_PREFIX = "/click-conversion"
#: Path of the OAuth2 token endpoint at the origin root.
TOKEN_PATH = "/oauth2/token"


@dataclass
class Reply:
    """
    A response before it is written to the wire.

    :param status: HTTP status.
    :param body: Encoded body.
    :param content_type: ``Content-Type`` value.
    :param headers: Further headers.
    :param header_lines: Header fields sent as they are, after :attr:`headers`; a name
        may repeat (one ``Link`` field per link).
    :param page_key: Identity of the list page served, if any.
    :param client_id: Client the request was attributed to, if any.
    :param after: Callback run once the reply is final, before it is written
        (e.g. new events arrive), so the next request sees its effect.
    """

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    header_lines: list[tuple[str, str]] = field(default_factory=list)
    page_key: str | None = None
    client_id: str | None = None
    after: Callable[[], None] | None = None


@dataclass(frozen=True)
class Request:
    """
    A parsed request.

    :param method: HTTP method.
    :param path: Decoded path without query.
    :param query: Parsed query string.
    :param headers: Case-insensitive header mapping.
    :param body: Request body.
    :param origin: Advertised origin of the sandbox.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    origin: str


class _ProblemError(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def json_reply(status: int, payload: Any, **kwargs: Any) -> Reply:
    """
    Encode ``payload`` as a compact JSON reply.

    :param status: HTTP status.
    :param payload: JSON-serialisable payload.
    :param kwargs: Further :class:`Reply` fields.
    :return: The reply.
    """
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode(), **kwargs)


def problem(
    config: SandboxConfig,
    status: int,
    title: str,
    detail: str,
    field_errors: dict[str, dict[str, Any]] | None = None,
) -> Reply:
    """
    Build an RFC 7807 problem reply with a fresh request id.

    :param config: Live configuration (problem media type).
    :param status: HTTP status.
    :param title: Short summary.
    :param detail: Human-readable explanation.
    :param field_errors: Validation errors per field (400 only).
    :return: The reply.
    """
    payload: dict[str, Any] = {
        "title": title,
        "status": status,
        "detail": detail,
        "context": {"request-id": str(uuid.uuid4())},
    }
    if field_errors:
        payload["field_errors"] = field_errors
    return json_reply(status, payload, content_type=config.problem_content_type)


def _bad_request(
    config: SandboxConfig,
    name: str,
    message: str,
    value: Any,
    detail: str | None = None,
) -> _ProblemError:
    return _ProblemError(
        problem(
            config,
            400,
            "Bad Request",
            detail or f"Invalid value for {name}: {message}",
            {name: {"message": message, "value": value}},
        )
    )


def _not_found(config: SandboxConfig, kind: str, identifier: object) -> _ProblemError:
    """The API's 404 for a ``kind`` ("Pixel", "Event", …) with id ``identifier``."""
    article = "An" if kind[0] in "AEIOU" else "A"
    return _ProblemError(
        problem(config, 404, f"{kind} not found", f"{article} {kind.lower()} with ID {identifier} could not be found")
    )


def _first(values: dict[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Api:
    """
    Routes requests to the endpoints.

    :param state: Shared sandbox state.
    """

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    # -- entry points -------------------------------------------------------------------

    def token(self, config: SandboxConfig, request: Request) -> Reply:
        """
        Serve ``POST /oauth2/token`` (client-credentials grant).

        :param config: Live configuration.
        :param request: The request.
        :return: Token or OAuth2 error reply.
        """
        if config.auth_mode == "headers":
            return problem(config, 404, "Not Found", f"No route for {request.path}")
        if request.method != "POST":
            return problem(config, 405, "Method Not Allowed", "Use POST")
        form = parse_qs(request.body.decode("utf-8", "replace"))
        basic = basic_credentials(request.headers)
        client_id = basic[0] if basic else _first(form, "client_id")
        secret = basic[1] if basic else _first(form, "client_secret")
        if (form.get("grant_type") or [""])[0] != "client_credentials":
            return json_reply(400, {"error": "unsupported_grant_type"}, client_id=client_id)
        client = self.state.check_secret(client_id, secret)
        if client is None:
            return json_reply(401, {"error": "invalid_client"}, client_id=client_id)
        token = self.state.issue_token(client, config.token_ttl)
        payload = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": config.token_ttl,
        }
        return json_reply(
            200,
            payload,
            client_id=client.client_id,
            headers={"Cache-Control": "no-store"},
        )

    def api(self, config: SandboxConfig, request: Request) -> Reply:
        """
        Serve a request below :data:`API_PREFIX` (rate limits and faults already applied).

        :param config: Live configuration.
        :param request: The request.
        :return: The reply.
        """
        parts = [unquote(p) for p in request.path[len(API_PREFIX) :].strip("/").split("/")]
        if parts == ["health"]:
            return json_reply(200, {"status": "ok"})
        client: SandboxClient | None = None
        try:
            client = self._authenticate(config, request)
            handler, args = self._match(config, request, parts)
            reply = handler(config, request, client, *args)
        except _ProblemError as exc:
            reply = exc.reply
        if reply.client_id is None and client is not None:
            reply.client_id = client.client_id
        return reply

    # -- plumbing -----------------------------------------------------------------------

    def _authenticate(self, config: SandboxConfig, request: Request) -> SandboxClient:
        headers = request.headers
        token = bearer_token(headers)
        if token is not None and config.auth_mode != "headers":
            client = self.state.token_client(token)
            if client is None:
                raise _ProblemError(
                    problem(
                        config,
                        401,
                        "Unauthorized",
                        "The access token is invalid or has expired",
                    )
                )
            return client
        if headers.get("client-id") is not None and config.auth_mode != "oauth2":
            client = self.state.check_secret(headers.get("client-id"), headers.get("client-secret"))
            if client is None:
                raise _ProblemError(problem(config, 401, "Unauthorized", "Invalid client credentials"))
            return client
        raise _ProblemError(problem(config, 401, "Unauthorized", "Missing client credentials"))

    def _match(
        self, config: SandboxConfig, request: Request, parts: list[str]
    ) -> tuple[Callable[..., Reply], tuple[str, ...]]:
        routes: dict[tuple[str, ...], Callable[..., Reply]] = {
            ("clients", "*"): self._client,
            ("shops", "*", "pixels"): self._pixels,
            ("pixels", "*", "events"): self._events,
            ("pixels", "*", "purchase-summary"): self._summary,
            ("events", "*"): self._event,
            ("clicks", "*"): self._click,
        }
        for pattern, handler in routes.items():
            if len(pattern) == len(parts) and all(p in ("*", v) for p, v in zip(pattern, parts, strict=True)):
                if request.method != "GET":
                    raise _ProblemError(
                        problem(
                            config,
                            405,
                            "Method Not Allowed",
                            f"{request.method} is not supported here",
                        )
                    )
                return handler, tuple(v for p, v in zip(pattern, parts, strict=True) if p == "*")
        raise _ProblemError(problem(config, 404, "Not Found", f"No route for {request.path}"))

    def _require_reader(self, config: SandboxConfig, client: SandboxClient, shop_id: int | None) -> None:
        if "shop_user" not in client.roles and "admin" not in client.roles:
            raise _ProblemError(problem(config, 403, "Forbidden", "The client lacks the role shop_user"))
        if shop_id is not None and client.shops is not None and shop_id not in client.shops:
            raise _ProblemError(problem(config, 403, "Forbidden", f"The client may not read shop {shop_id}"))

    def _pixel(self, config: SandboxConfig, client: SandboxClient, pixel_id: str) -> Pixel:
        self._require_reader(config, client, None)
        if not is_uuid(pixel_id):
            raise _bad_request(config, "pixel_id", "invalid uuid", pixel_id)
        pixel = self.state.seed_data.by_id.get(pixel_id.lower())
        if pixel is None:
            raise _not_found(config, "Pixel", pixel_id)
        self._require_reader(config, client, pixel.shop_id)
        return pixel

    def _window(self, config: SandboxConfig, query: dict[str, list[str]]) -> tuple[datetime, datetime, ServedWindow]:
        values: dict[str, datetime] = {}
        for name in ("from", "to"):
            raw = query.get(name)
            if not raw or not raw[0]:
                raise _bad_request(
                    config,
                    name,
                    "required",
                    None,
                    f"The query parameter {name} is required",
                )
            parsed = parse_time(raw[0])
            if parsed is None:
                raise _bad_request(config, name, "invalid date-time", raw[0])
            values[name] = parsed
        start, end = values["from"], values["to"]
        error = window_error(config.window_bounds, start, end)
        if error is not None:
            raise _bad_request(config, "to", error[0], query["to"][0], error[1])
        return start, end, served_window(config.window_bounds, start, end)

    def _paging(self, config: SandboxConfig, query: dict[str, list[str]]) -> tuple[int, int, dict[str, str]]:
        keep: dict[str, str] = {}
        limit = config.page_size
        raw_limit = query.get(config.page_size_param)
        if raw_limit:
            text = raw_limit[0]
            if not text.isdigit() or not 1 <= int(text) <= config.max_page_size:
                raise _bad_request(
                    config,
                    config.page_size_param,
                    f"must be an integer between 1 and {config.max_page_size}",
                    text,
                )
            limit = int(text)
            keep[config.page_size_param] = text
        offset = 0
        raw_cursor = query.get("cursor")
        if raw_cursor:
            decoded = decode_cursor(raw_cursor[0])
            if decoded is None:
                raise _bad_request(config, "cursor", "invalid cursor", raw_cursor[0])
            offset = decoded
        return limit, offset, keep

    def _list_reply(
        self,
        config: SandboxConfig,
        request: Request,
        items: list[dict[str, Any]],
        params: dict[str, str],
        offset: int,
        limit: int,
        total: int,
        page_key: str,
        kind: str,
    ) -> Reply:
        reply = json_reply(200, list_body(config, items, kind), page_key=page_key)
        links = link_header(config, request.origin, request.path, params, offset, limit, total)
        reply.header_lines.extend(("Link", value) for value in links)
        return reply

    # -- endpoints ----------------------------------------------------------------------

    def _client(
        self,
        config: SandboxConfig,
        request: Request,
        client: SandboxClient,
        client_id: str,
    ) -> Reply:
        if client_id != client.client_id:
            raise _not_found(config, "Client", client_id)
        return json_reply(200, {"id": client.client_id, "roles": list(client.roles)})

    def _pixels(
        self,
        config: SandboxConfig,
        request: Request,
        client: SandboxClient,
        raw_shop: str,
    ) -> Reply:
        self._require_reader(config, client, None)
        if not raw_shop.lstrip("-").isdigit():
            raise _bad_request(config, "shop_id", "invalid integer", raw_shop)
        shop_id = int(raw_shop)
        pixels = self.state.seed_data.shops.get(shop_id)
        if pixels is None:
            raise _not_found(config, "Shop", shop_id)
        self._require_reader(config, client, shop_id)
        limit, offset, params = self._paging(config, request.query)
        items = [p.as_dict() for p in pixels[offset : offset + limit]]
        return self._list_reply(
            config,
            request,
            items,
            params,
            offset,
            limit,
            len(pixels),
            f"shop:{shop_id}:{offset}",
            "pixels",
        )

    def _events(
        self,
        config: SandboxConfig,
        request: Request,
        client: SandboxClient,
        pixel_id: str,
    ) -> Reply:
        pixel = self._pixel(config, client, pixel_id)
        start, end, served = self._window(config, request.query)
        limit, offset, params = self._paging(config, request.query)
        seed = self.state.seed_data
        lo, hi = self.index_range(pixel, served)
        total = hi - lo
        with_pixel_id = config.event_fields == "extended"
        items = seed.events_desc(pixel, lo, hi, offset, limit, with_pixel_id) if offset < total else []
        from_s, to_s = _iso(start), _iso(end)
        reply = self._list_reply(
            config,
            request,
            items,
            {"from": from_s, "to": to_s, **params},
            offset,
            limit,
            total,
            f"{pixel.id}:{from_s}:{to_s}:{offset}",
            "events",
        )
        if config.new_events_per_page > 0:
            n = config.new_events_per_page

            def arrive() -> None:
                self.state.add_events(pixel, n)

            reply.after = arrive
        return reply

    def _summary(
        self,
        config: SandboxConfig,
        request: Request,
        client: SandboxClient,
        pixel_id: str,
    ) -> Reply:
        pixel = self._pixel(config, client, pixel_id)
        start, end, served = self._window(config, request.query)
        entries = self.state.seed_data.purchase_summary(pixel, *self.index_range(pixel, served))
        return json_reply(200, summary_body(config, _iso(start), _iso(end), entries))

    def index_range(self, pixel: Pixel, served: ServedWindow) -> tuple[int, int]:
        """
        Map a served window to the pixel's event index range ``[lo, hi)``.

        :param pixel: The pixel.
        :param served: What the server selects, see :func:`~.bounds.served_window`.
        :return: ``(lo, hi)``.
        """
        return self.state.seed_data.index_range(
            pixel,
            self.state.count(pixel),
            served.start,
            served.end,
            lo_open=served.start_open,
            hi_closed=served.end_closed,
        )

    def summary(self, pixel: Pixel, start: datetime, end: datetime) -> dict[str, Any]:
        """
        Compute the purchase summary of ``pixel`` for ``[start, end)`` in the ``"currencies"`` shape.

        :param pixel: The pixel.
        :param start: Window start (inclusive).
        :param end: Window end (exclusive).
        :return: ``{"from", "to", "currencies": [{"currency", "count", "total_amount"}]}``.
        """
        lo, hi = self.index_range(pixel, ServedWindow(start.timestamp(), end.timestamp()))
        return {
            "from": _iso(start),
            "to": _iso(end),
            "currencies": self.state.seed_data.purchase_summary(pixel, lo, hi),
        }

    def _event(
        self,
        config: SandboxConfig,
        request: Request,
        client: SandboxClient,
        event_id: str,
    ) -> Reply:
        self._require_reader(config, client, None)
        if not is_uuid(event_id):
            raise _bad_request(config, "event_id", "invalid uuid", event_id)
        found = self.state.seed_data.locate_event(event_id)
        if found is None or found[1] >= self.state.count(found[0]):
            raise _not_found(config, "Event", event_id)
        self._require_reader(config, client, found[0].shop_id)
        return json_reply(200, self.state.seed_data.event(*found, config.event_fields == "extended"))

    def _click(
        self,
        config: SandboxConfig,
        request: Request,
        client: SandboxClient,
        click_id: str,
    ) -> Reply:
        self._require_reader(config, client, None)
        found = self.state.seed_data.locate_click(click_id)
        if found is None or found[1] >= self.state.count(found[0]):
            raise _not_found(config, "Click", click_id)
        self._require_reader(config, client, found[0].shop_id)
        return json_reply(200, self.state.seed_data.click(*found, config.click_fields == "candidates"))
