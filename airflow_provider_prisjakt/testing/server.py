"""
The Prisjakt sandbox: a real HTTP server imitating the Click and Conversion API.

Only the standard library is used, so plain test code (without Airflow) can
start it::

    with PrisjaktSandbox(SandboxConfig(events_per_pixel=500)) as sb:
        requests.get(f"{sb.base_url}/shops/4242/pixels",
                     headers={"client-id": sb.client_id, "client-secret": sb.client_secret})

The request pipeline of an API path is: count the request against the
client's rate-limit window (and answer 429 when over the limit), inject a
scheduled or random fault, authenticate, route, add (or, as configured, leave
out) the rate-limit headers. ``/health`` and ``/oauth2/token`` skip rate
limiting and faults. Every response then waits ``latency_ms`` and is gzipped
when configured and accepted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from airflow_provider_prisjakt.testing.api import (
    API_PREFIX,
    TOKEN_PATH,
    Api,
    Reply,
    Request,
    json_reply,
    problem,
)
from airflow_provider_prisjakt.testing.bounds import ServedWindow, served_window
from airflow_provider_prisjakt.testing.config import (
    RecordedRequest,
    SandboxClient,
    SandboxConfig,
)
from airflow_provider_prisjakt.testing.faults import Fault, FaultPlan
from airflow_provider_prisjakt.testing.ratelimit import (
    RATE_LIMIT_HEADERS,
    HeaderDropper,
    RateDecision,
    RateLimiter,
    retry_after_headers,
)
from airflow_provider_prisjakt.testing.shapes import errors_body
from airflow_provider_prisjakt.testing.state import (
    ANONYMOUS,
    SandboxState,
    default_clients,
)

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing.seed import Pixel

_HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


class _Server(ThreadingHTTPServer):
    """Threading HTTP server that tracks open connections so ``stop`` can close them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: PrisjaktSandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup of :class:`http.server.HTTPServer`."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection, then hand it to a daemon thread."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Report handler errors (e.g. clients hanging up) only when verbose."""
        if self.sandbox.config.verbose:
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down every open (keep-alive) connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to :meth:`PrisjaktSandbox._handle`."""

    protocol_version = "HTTP/1.1"
    server_version = "PrisjaktSandbox/1.0"
    disable_nagle_algorithm = True
    wbufsize = 65536
    server: _Server

    def do_GET(self) -> None:
        """Serve GET."""
        self.server.sandbox._handle(self)

    do_POST = do_GET  # noqa: N815
    do_PUT = do_GET  # noqa: N815
    do_PATCH = do_GET  # noqa: N815
    do_DELETE = do_GET  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        """Log to stderr only when the sandbox is verbose."""
        if self.server.sandbox.config.verbose:
            sys.stderr.write(f"[prisjakt-sandbox] {self.client_address[0]} {format % args}\n")


class PrisjaktSandbox:
    """
    A local, deterministic Prisjakt Click and Conversion API.

    :param config: Configuration; defaults to :class:`SandboxConfig()`.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._config = config or SandboxConfig()
        self._config_lock = threading.Lock()
        self._state = SandboxState(self._config)
        self._api = Api(self._state)
        self._limiter = RateLimiter()
        self._dropper = HeaderDropper()
        self._faults = FaultPlan()
        self._records: list[RecordedRequest] = []
        self._records_changed = threading.Condition()
        self._unrecorded = 0  # requests received whose answer is not decided yet (a stall, say)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._origin = ""

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> PrisjaktSandbox:
        """
        Bind the port and serve in a daemon thread.

        :return: ``self``.
        :raises RuntimeError: When already started.
        """
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._stopping.clear()
        self._server = _Server((self._config.host, self._config.port), self)
        self._origin = self.origin
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"prisjakt-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end stalls and close open connections; safe to call twice."""
        server, self._server = self._server, None
        self._stopping.set()
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses and credentials -------------------------------------------------------

    @property
    def port(self) -> int:
        """
        The bound TCP port.

        :raises RuntimeError: When ``port=0`` and the sandbox is not running.
        """
        if self._server is not None:
            return self._server.server_port
        if self._config.port:
            return self._config.port
        raise RuntimeError("the sandbox is not running; call start() first")

    @property
    def host(self) -> str:
        """The advertised host: the bound host, or ``127.0.0.1`` for wildcard binds."""
        host = self._config.host
        return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host

    @property
    def origin(self) -> str:
        """``http://<host>:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/click-conversion``, the API base address."""
        return self.origin + API_PREFIX

    @property
    def token_url(self) -> str:
        """``http://<host>:<port>/oauth2/token``."""
        return self.origin + TOKEN_PATH

    def _client_with(self, role: str, fallback: SandboxClient) -> SandboxClient:
        for client in self._state.clients.values():
            if role in client.roles:
                return client
        return fallback

    @property
    def client_id(self) -> str:
        """Id of the ``shop_user`` client."""
        return self._client_with("shop_user", default_clients(self._config.seed)[0]).client_id

    @property
    def client_secret(self) -> str:
        """Secret of the ``shop_user`` client."""
        return self._client_with("shop_user", default_clients(self._config.seed)[0]).client_secret

    @property
    def publisher_client_id(self) -> str:
        """Id of the ``event_publisher`` client (403 on every read endpoint)."""
        return self._client_with("event_publisher", default_clients(self._config.seed)[1]).client_id

    @property
    def publisher_client_secret(self) -> str:
        """Secret of the ``event_publisher`` client."""
        return self._client_with("event_publisher", default_clients(self._config.seed)[1]).client_secret

    def connection_json(self, **extra: Any) -> str:
        """
        Return the JSON form of an Airflow connection (for ``AIRFLOW_CONN_<ID>``).

        :param extra: Connection extras.
        :return: ``{"conn_type": "prisjakt", "host": base_url, "login", "password", "extra"}``.
        """
        return json.dumps(
            {
                "conn_type": "prisjakt",
                "host": self.base_url,
                "login": self.client_id,
                "password": self.client_secret,
                "extra": extra,
            }
        )

    def connection_uri(self, **extra: Any) -> str:
        """
        Return the URI form of an Airflow connection.

        The URI is ``prisjakt://<id>:<secret>@<host>:<port>/click-conversion?protocol=http``.
        Since an Airflow URI cannot carry the ``http`` scheme of the sandbox, the
        extra ``protocol`` (``"http"`` or ``"https"``) tells the hook which scheme
        to use. String extras become query parameters; when any extra is not a
        string, all extras travel JSON-encoded in ``__extra__``.

        :param extra: Further connection extras.
        :return: The connection URI.
        """
        params: dict[str, Any] = {"protocol": "http", **extra}
        if all(isinstance(v, str) for v in params.values()):
            query = urlencode(params)
        else:
            query = urlencode({"__extra__": json.dumps(params)})
        user = quote(self.client_id, safe="")
        password = quote(self.client_secret, safe="")
        return f"prisjakt://{user}:{password}@{self.host}:{self.port}{API_PREFIX}?{query}"

    # -- configuration and control -------------------------------------------------------

    @property
    def config(self) -> SandboxConfig:
        """The live configuration."""
        return self._config

    def configure(self, **changes: Any) -> SandboxConfig:
        """
        Replace configuration fields at runtime (thread-safe).

        ``host`` and ``port`` changes take effect only at the next :meth:`start`.
        Changing seed, shops, events per pixel or the period rebuilds the data
        and forgets added events.

        :param changes: Field names of :class:`SandboxConfig` and their new values.
        :return: The new configuration.
        """
        with self._config_lock:
            config = dataclasses.replace(self._config, **changes)
            self._state.apply(config)
            self._config = config
        return config

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every recorded request, in arrival order."""
        with self._records_changed:
            return list(self._records)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._records_changed:
            self._records.clear()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """
        Block until at least ``count`` requests are recorded (since the last clear).

        A request is recorded once its answer is decided, before it is written, so a
        test can hold its client and still see the sandbox receive the request.

        :param count: Number of recorded requests to wait for.
        :param timeout: Seconds to wait at most.
        :return: Whether that many arrived in time.
        """
        with self._records_changed:
            return self._records_changed.wait_for(lambda: len(self._records) >= count, timeout)

    def wait_until_recorded(self, timeout: float = 10.0) -> bool:
        """
        Block until every request received so far is recorded: a stalled one once its stall ends,
        although its client may have timed out and moved on long before.

        :param timeout: Seconds to wait at most.
        :return: Whether every request was recorded in time.
        """
        with self._records_changed:
            return self._records_changed.wait_for(lambda: self._unrecorded == 0, timeout)

    def reset_rate_limit(self) -> None:
        """Forget every rate-limit window."""
        self._limiter.reset()

    def expire_tokens(self) -> None:
        """Invalidate every issued access token (later use gives 401)."""
        self._state.expire_tokens()

    def issued_tokens(self) -> list[str]:
        """Return every access token issued so far, so tests can check none of them leaked."""
        return self._state.issued_tokens()

    def fail_next(self, kind: str, count: int = 1, **options: Any) -> None:
        """
        Give the next ``count`` API requests a fault.

        :param kind: ``"500"``, ``"503"``, ``"html502"``, ``"drop"``, ``"truncate"``,
            ``"stall"`` (option ``seconds``, default the configured stall length),
            ``"429"`` (options ``reset_ms``, ``budget`` and ``retry_after``, defaults
            :attr:`FaultConfig.burst_reset_ms`, :attr:`FaultConfig.burst_budget` and
            :attr:`FaultConfig.burst_retry_after`), ``"redirect"`` (302 to option
            ``location``, required) or ``"errors"`` (an errors-only envelope
            ``{member: null, "errors": [...]}``; option ``status``, default 200).
            Every kind but ``"429"``, ``"drop"`` and ``"stall"`` also takes
            ``retry_after_s`` (a wait in seconds to announce in ``Retry-After``) and
            ``retry_after`` (its form, ``"seconds"`` by default or ``"http_date"``),
            e.g. ``fail_next("503", retry_after_s=3600)``.
        :param count: Number of requests.
        :param options: Kind-specific options.
        :raises ValueError: For an unknown kind or missing options.
        """
        self._faults.schedule(kind, count, options)

    # -- seed truth ---------------------------------------------------------------------

    def _pixel(self, pixel_id: str) -> Pixel:
        pixel = self._state.seed_data.by_id.get(pixel_id.lower())
        if pixel is None:
            raise ValueError(f"unknown pixel {pixel_id!r}")
        return pixel

    def pixel_ids(self, shop_id: int | None = None) -> list[str]:
        """
        Return the seeded pixel ids, of one shop or of all shops.

        :param shop_id: Shop to list, or ``None`` for all.
        :return: Pixel ids in API order.
        """
        data = self._state.seed_data
        pixels = data.pixels if shop_id is None else data.shops.get(shop_id, ())
        return [p.id for p in pixels]

    def pixels_by_shop(self) -> dict[int, list[str]]:
        """
        Return every shop with its pixel ids, in API order.

        :return: Shop id to pixel ids.
        """
        return {shop_id: [p.id for p in pixels] for shop_id, pixels in self._state.seed_data.shops.items()}

    def pixel_of_event(self, event_id: str) -> str:
        """
        Name the pixel an event belongs to, which the event record itself does not say.

        :param event_id: Event id as served.
        :return: The pixel id.
        :raises ValueError: When the sandbox never issued that event id.
        """
        found = self._state.seed_data.locate_event(event_id)
        if found is None:
            raise ValueError(f"unknown event {event_id!r}")
        return found[0].id

    def expected_events(self, pixel_id: str, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """
        Yield the events the API holds for ``[start, end)``, newest first.

        This is the truth a client promises to export for the window, whatever
        :attr:`SandboxConfig.window_bounds` makes the server send; see
        :meth:`served_events` for what the server sends. The records have the members
        :attr:`SandboxConfig.event_fields` gives them (no ``pixel_id`` by default).

        :param pixel_id: Pixel id.
        :param start: Window start (inclusive); naive values are UTC.
        :param end: Window end (exclusive); naive values are UTC.
        :return: Iterator of event dicts identical to the API's.
        """
        return self._events_in(pixel_id, ServedWindow(_ts(start), _ts(end)))

    def served_events(self, pixel_id: str, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """
        Yield what ``GET /pixels/{id}/events?from=start&to=end`` lists over all its pages.

        It differs from :meth:`expected_events` only under a ``window_bounds`` other
        than ``"exclusive"``: a client that does not filter by ``event_time`` exports these.

        :param pixel_id: Pixel id.
        :param start: ``from``; naive values are UTC.
        :param end: ``to``; naive values are UTC.
        :return: Iterator of event dicts, newest first.
        """
        return self._events_in(pixel_id, served_window(self._config.window_bounds, _aware(start), _aware(end)))

    def _events_in(self, pixel_id: str, served: ServedWindow) -> Iterator[dict[str, Any]]:
        pixel = self._pixel(pixel_id)
        lo, hi = self._api.index_range(pixel, served)
        with_pixel_id = self._config.event_fields == "extended"
        return (self._state.seed_data.event(pixel, i, with_pixel_id) for i in range(hi - 1, lo - 1, -1))

    def expected_purchase_summary(self, pixel_id: str, start: datetime, end: datetime) -> dict[str, Any]:
        """
        Return the purchase summary of ``[start, end)`` in the ``"currencies"`` shape.

        That is what ``GET /pixels/{id}/purchase-summary`` answers with the default
        knobs, and the one shape ``PrisjaktHook.get_purchase_summary`` returns whatever
        :attr:`SandboxConfig.summary_shape` the server uses.

        :param pixel_id: Pixel id.
        :param start: Window start (inclusive).
        :param end: Window end (exclusive).
        :return: ``{"from", "to", "currencies": [{"currency", "count", "total_amount"}]}``.
        """
        return self._api.summary(self._pixel(pixel_id), _aware(start), _aware(end))

    def add_events(self, pixel_id: str, n: int) -> None:
        """
        Let ``n`` new events arrive now, at the newest end of the pixel's period.

        :param pixel_id: Pixel id.
        :param n: Number of events.
        """
        self._state.add_events(self._pixel(pixel_id), n)

    # -- request pipeline ---------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        started = time.monotonic()
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        request = Request(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            origin=self._origin,
        )
        config = self._config
        fault: Fault | None = None
        reply: Reply | None
        with self._records_changed:
            self._unrecorded += 1
        try:
            if request.path == TOKEN_PATH:
                reply = self._api.token(config, request)
            elif request.path.rstrip("/") == API_PREFIX + "/health":
                reply = self._api.api(config, request)
            elif request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
                reply, fault = self._api_request(config, request)
            else:
                reply = problem(config, 404, "Not Found", f"No route for {request.path}")
        except Exception:
            if config.verbose:
                traceback.print_exc()
            reply = problem(config, 500, "Internal Server Error", "Unexpected sandbox error")
        if reply is not None and reply.after is not None:
            reply.after()
        self._record(request, reply, fault, started)
        if config.latency_ms > 0:
            self._stopping.wait(config.latency_ms / 1000)
        if reply is None:
            handler.close_connection = True
            return
        if config.gzip and reply.body and _accepts_gzip(request.headers.get("accept-encoding", "")):
            reply.body = gzip.compress(reply.body, compresslevel=6)
            reply.headers["Content-Encoding"] = "gzip"
            reply.headers["Vary"] = "Accept-Encoding"
        self._send(handler, reply, truncate=fault is not None and fault.kind == "truncate")

    def _api_request(self, config: SandboxConfig, request: Request) -> tuple[Reply | None, Fault | None]:
        key = self._state.rate_key(request.headers)
        attributed = None if key == ANONYMOUS else key
        decision = self._limiter.hit(key, config.rate_limit, config.rate_window)
        fault: Fault | None = None
        reply: Reply | None
        if not decision.allowed:
            reply = self._too_many(config, decision.headers(config.reset_style, config.retry_after_form), attributed)
        else:
            fault = self._faults.draw(config.faults)
            reply = self._apply_fault(config, fault, decision, attributed) if fault is not None else None
            if reply is None and (fault is None or fault.kind != "drop"):
                reply = self._api.api(config, request)
                reply.headers.update(decision.headers(config.reset_style))
        if reply is not None and self._dropper.drop(config.seed, config.rate_headers_missing_rate):
            for name in RATE_LIMIT_HEADERS:
                reply.headers.pop(name, None)
        return reply, fault

    @staticmethod
    def _too_many(config: SandboxConfig, headers: dict[str, str], client_id: str | None) -> Reply:
        reply = problem(
            config,
            429,
            "Too Many Requests",
            "The rate limit of the client is exhausted",
        )
        reply.headers.update(headers)
        reply.client_id = client_id
        return reply

    def _apply_fault(
        self,
        config: SandboxConfig,
        fault: Fault,
        decision: RateDecision,
        client_id: str | None,
    ) -> Reply | None:
        """Answer with ``fault``; ``None`` means no answer (``drop``) or the normal one (the rest)."""
        kind = fault.kind
        reply: Reply | None = None
        if kind in ("500", "503"):
            title = "Internal Server Error" if kind == "500" else "Service Unavailable"
            reply = problem(config, int(kind), title, "Injected sandbox fault")
        elif kind == "html502":
            reply = Reply(502, _HTML_502, content_type="text/html; charset=utf-8")
        elif kind == "redirect":
            reply = Reply(302, b"", headers={"Location": str(fault.options["location"])})
        elif kind == "errors":
            status = int(fault.options.get("status", 200))
            reply = json_reply(status, errors_body(config, "Injected sandbox fault: the events could not be read"))
        elif kind == "429":
            return self._too_many(config, self._burst_headers(config, fault, decision), client_id)
        elif kind == "stall":
            self._stopping.wait(float(fault.options.get("seconds", config.faults.stall_seconds)))
            return None
        if reply is not None:
            reply.headers.update(decision.headers(config.reset_style))
            if "retry_after_s" in fault.options:
                form = str(fault.options.get("retry_after", "seconds"))
                reply.headers.update(retry_after_headers(form, float(fault.options["retry_after_s"]), time.time()))
            reply.client_id = client_id
        return reply

    @staticmethod
    def _burst_headers(config: SandboxConfig, fault: Fault, decision: RateDecision) -> dict[str, str]:
        """Rate-limit headers of a burst 429: a spent budget, or the real one with budget left."""
        faults = config.faults
        seconds = int(fault.options.get("reset_ms", faults.burst_reset_ms)) / 1000
        form = str(fault.options.get("retry_after", faults.burst_retry_after))
        if form == "inherit":
            form = config.retry_after_form
        if fault.options.get("budget", faults.burst_budget) == "left":
            headers = decision.headers(config.reset_style)
        else:
            headers = RateDecision(False, decision.limit, 0, seconds).headers(config.reset_style)
        headers.update(retry_after_headers(form, seconds, time.time()))
        return headers

    def _record(self, request: Request, reply: Reply | None, fault: Fault | None, started: float) -> None:
        client_id = reply.client_id if reply is not None else None
        if client_id is None:
            client_id = request.headers.get("client-id")
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query,
            status=reply.status if reply is not None else 0,
            client_id=client_id,
            fault=fault.kind if fault is not None else None,
            started_at=started,
            page_key=reply.page_key if reply is not None else None,
        )
        with self._records_changed:
            self._records.append(record)
            self._unrecorded -= 1
            self._records_changed.notify_all()

    @staticmethod
    def _send(handler: _Handler, reply: Reply, truncate: bool) -> None:
        body = reply.body
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in [*reply.headers.items(), *reply.header_lines]:
            handler.send_header(name, value)
        if truncate:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2] if truncate else body)
        if truncate:
            handler.wfile.flush()
            handler.close_connection = True


def _accepts_gzip(accept_encoding: str) -> bool:
    """Tell whether an ``Accept-Encoding`` value admits gzip (``gzip;q=0`` refuses it)."""
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        name, _, quality = params.partition("=")
        try:
            return name.strip().lower() != "q" or float(quality) > 0
        except ValueError:
            return False
    return False


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _ts(value: datetime) -> float:
    return _aware(value).timestamp()
