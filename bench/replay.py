"""
A caching replay front for the Prisjakt sandbox, so that extraction measures the client, not the server.

The sandbox builds every event on request (several BLAKE2 digests and a JSON encode per event),
which caps it at roughly 25-30k events/s on one core. Every client would then measure the same
speed. This front forwards a request it has not seen to the sandbox once, keeps the response (status,
headers and body, byte for byte; only the origin inside ``Link`` is rewritten to point back here),
and answers every later identical request from memory. The data is therefore the sandbox's own.

The cache key is the path plus the sorted query, so tools that order their query parameters
differently share entries. Credentials are checked on every request, as the sandbox does.

``latency_ms`` plays the network: the handler thread waits that long (``time.sleep``, no CPU)
before it writes each response. It can be changed between runs, so that runs with and without
latency are served the same recorded bytes.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PrisjaktReplay/1.0"
    disable_nagle_algorithm = True
    server: _ReplayServer

    def do_GET(self) -> None:
        self.server.replay.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _ReplayServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, replay: ReplayFront) -> None:
        self.replay = replay
        super().__init__(("127.0.0.1", 0), _Handler)


class ReplayFront:
    """
    Serve recorded sandbox responses; forward and record on a miss.

    :param upstream_origin: the sandbox origin, ``http://127.0.0.1:<port>``.
    :param client_id: the credential the front accepts (and forwards).
    :param client_secret: its secret.
    :param latency_ms: wait before each response is written, in milliseconds (see the module's doc).
    """

    def __init__(self, upstream_origin: str, client_id: str, client_secret: str, latency_ms: float = 0.0) -> None:
        self.latency_ms = latency_ms
        self.upstream = urlsplit(upstream_origin)
        self.upstream_origin = upstream_origin
        self.client_id = client_id
        self.client_secret = client_secret
        self.cache: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[int, list[tuple[str, str]], bytes]] = {}
        self.hits = 0
        self.misses = 0
        self.lock = threading.Lock()
        self._local = threading.local()
        self._server = _ReplayServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>`` of the front."""
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> ReplayFront:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def cached_bytes(self) -> int:
        """Bytes of body held in memory."""
        return sum(len(entry[2]) for entry in self.cache.values())

    def _upstream(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=120)
            self._local.conn = conn
        return conn

    def _fetch(self, target: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in range(2):
            conn = self._upstream()
            try:
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
                body = response.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        kept = []
        for name, value in response.getheaders():
            if name.lower() in HOP_HEADERS:
                continue
            if name.lower() == "link":
                value = value.replace(self.upstream_origin, self.origin)
            kept.append((name, value))
        return response.status, kept, body

    def handle(self, handler: _Handler) -> None:
        """Answer one request from the cache, or forward, record and answer it."""
        split = urlsplit(handler.path)
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)
        if (
            handler.headers.get("client-id") != self.client_id
            or handler.headers.get("client-secret") != self.client_secret
        ):
            body = b'{"status":401,"title":"Unauthorized","detail":"bad credentials"}'
            handler.send_response(401)
            handler.send_header("Content-Type", "application/problem+json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        key = (split.path, tuple(sorted(parse_qsl(split.query, keep_blank_values=True))))
        entry = self.cache.get(key)
        if entry is None:
            entry = self._fetch(handler.path, {"client-id": self.client_id, "client-secret": self.client_secret})
            with self.lock:
                self.misses += 1
                if entry[0] == 200:
                    self.cache[key] = entry
        else:
            with self.lock:
                self.hits += 1
        status, headers, body = entry
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
