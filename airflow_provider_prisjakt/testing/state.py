"""Mutable state of a running sandbox: seed data, added events, clients and tokens."""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from collections.abc import Mapping

from airflow_provider_prisjakt.testing.config import SandboxClient, SandboxConfig
from airflow_provider_prisjakt.testing.seed import Pixel, SeedData, client_credentials

#: Rate-limit key of requests without any client identity.
ANONYMOUS = "-"


def default_clients(seed: int) -> tuple[SandboxClient, SandboxClient]:
    """
    Return the default ``shop_user`` client and the ``event_publisher`` client.

    :param seed: Data seed.
    :return: ``(shop_user_client, publisher_client)``.
    """
    main_id, main_secret = client_credentials(seed, "shop_user")
    pub_id, pub_secret = client_credentials(seed, "publisher")
    return (
        SandboxClient(main_id, main_secret, ("shop_user",), None),
        SandboxClient(pub_id, pub_secret, ("event_publisher",), None),
    )


def _data_key(config: SandboxConfig) -> tuple[object, ...]:
    return (
        config.seed,
        tuple(sorted(config.shops.items())),
        config.events_per_pixel,
        config.period_start,
        config.period_end,
    )


class SandboxState:
    """
    Thread-safe data and identity state shared by all request threads.

    :param config: Initial configuration.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._issued: list[str] = []
        self._added: dict[str, int] = {}
        self._data_key: tuple[object, ...] = ()
        self.seed_data = self._rebuild(config)
        self.clients: dict[str, SandboxClient] = {}
        self.apply(config)

    def _rebuild(self, config: SandboxConfig) -> SeedData:
        self._data_key = _data_key(config)
        self._added = {}
        return SeedData(
            config.seed,
            config.shops,
            config.events_per_pixel,
            config.period_start,
            config.period_end,
        )

    def apply(self, config: SandboxConfig) -> None:
        """
        Adopt a new configuration; data changes rebuild the seed and drop added events.

        :param config: The new configuration.
        """
        with self._lock:
            if _data_key(config) != self._data_key:
                self.seed_data = self._rebuild(config)
            clients = config.clients if config.clients is not None else default_clients(config.seed)
            self.clients = {c.client_id: c for c in clients}

    # -- events -------------------------------------------------------------------------

    def count(self, pixel: Pixel) -> int:
        """
        Return the current number of events of ``pixel`` (seeded plus added).

        :param pixel: The pixel.
        :return: Event count.
        """
        return self.seed_data.events_per_pixel + self._added.get(pixel.id, 0)

    def add_events(self, pixel: Pixel, n: int) -> None:
        """
        Let ``n`` new events arrive for ``pixel``.

        :param pixel: The pixel.
        :param n: Number of events.
        """
        with self._lock:
            self._added[pixel.id] = self._added.get(pixel.id, 0) + n

    # -- identity -----------------------------------------------------------------------

    def issue_token(self, client: SandboxClient, ttl: int) -> str:
        """
        Issue a bearer token for ``client``.

        :param client: The client.
        :param ttl: Lifetime in seconds.
        :return: The opaque access token.
        """
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (client.client_id, time.monotonic() + ttl)
            self._issued.append(token)
        return token

    def issued_tokens(self) -> list[str]:
        """Return every access token issued so far, expired ones included."""
        with self._lock:
            return list(self._issued)

    def expire_tokens(self) -> None:
        """Make every issued token invalid."""
        with self._lock:
            self._tokens.clear()

    def token_client(self, token: str) -> SandboxClient | None:
        """
        Return the client of a live token.

        :param token: Bearer token.
        :return: The client or ``None`` for unknown or expired tokens.
        """
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return self.clients.get(entry[0])

    def check_secret(self, client_id: str | None, secret: str | None) -> SandboxClient | None:
        """
        Return the client whose id and secret match.

        :param client_id: Presented id.
        :param secret: Presented secret.
        :return: The client or ``None``.
        """
        client = self.clients.get(client_id or "")
        if client is None or secret is None:
            return None
        if not secrets.compare_digest(client.client_secret.encode(), secret.encode()):
            return None
        return client

    def rate_key(self, headers: Mapping[str, str]) -> str:
        """
        Return the rate-limit key of a request: its ``client-id`` header or token owner.

        :param headers: Request headers (case-insensitive mapping).
        :return: Key for the rate limiter.
        """
        client_id = headers.get("client-id")
        if client_id:
            return client_id
        token = bearer_token(headers)
        client = self.token_client(token) if token else None
        return client.client_id if client else ANONYMOUS


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """
    Extract a bearer token from the ``Authorization`` header.

    :param headers: Request headers.
    :return: The token or ``None``.
    """
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """
    Extract HTTP Basic credentials (used by OAuth2 clients at the token endpoint).

    :param headers: Request headers.
    :return: ``(client_id, client_secret)`` or ``None``.
    """
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
