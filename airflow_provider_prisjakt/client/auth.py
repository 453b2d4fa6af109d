"""
Credentials: ``client-id``/``client-secret`` headers, or an OAuth2 client-credentials bearer token.

The sync side is :class:`PrisjaktAuth`, a ``requests`` auth that adds credentials only to requests
for the configured API origin, on the session :func:`open_session` builds; the async side is
:class:`AsyncPrisjaktAuth`. Both build their headers with :func:`credential_headers`, ask the token
endpoint with :func:`token_request_form`, read its answer with :func:`parse_token_response` and
keep the token in a :class:`TokenCache`. A token is masked in logs the moment it is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from airflow.providers.common.compat.sdk import mask_secret
from requests.adapters import HTTPAdapter

from airflow_provider_prisjakt import __version__
from airflow_provider_prisjakt.api.decoding import decode_json
from airflow_provider_prisjakt.api.pagination import same_origin
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError, PrisjaktServerError, api_error_from_response

if TYPE_CHECKING:
    import aiohttp

    from airflow_provider_prisjakt.hooks.connection import ConnectionSettings

#: A token is renewed this long before it expires, so that no request carries one about to lapse.
TOKEN_EXPIRY_MARGIN_SECONDS = 60.0
#: The lifetime assumed when the token endpoint does not say (``expires_in`` absent).
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600.0
OAUTH2 = "oauth2"


def user_agent() -> str:
    """Return the User-Agent naming this provider, Airflow and requests versions."""
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover
        airflow_version = "unknown"
    return f"airflow-provider-prisjakt/{__version__} apache-airflow/{airflow_version} python-requests/{requests.__version__}"


def open_session(auth: requests.auth.AuthBase) -> requests.Session:
    """Return a pooled session with the provider's User-Agent and ``auth``; it retries nothing itself."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent()
    session.headers["Accept"] = "application/json, application/problem+json;q=0.9"
    session.auth = auth
    return session


def credential_headers(settings: ConnectionSettings, bearer_token: str | None = None) -> dict[str, str]:
    """
    Return the headers that authenticate a request: a bearer token, or client-id and client-secret.

    :raises PrisjaktConfigError: for OAuth2 without a token.
    """
    if settings.auth_type == OAUTH2:
        if bearer_token is None:
            raise PrisjaktConfigError("auth_type is oauth2 but no token was obtained")
        return {"Authorization": f"Bearer {bearer_token}"}
    return {"client-id": settings.client_id, "client-secret": settings.client_secret}


def token_request_form(settings: ConnectionSettings) -> dict[str, str]:
    """Return the OAuth2 client-credentials form sent to the token URL."""
    return {
        "grant_type": "client_credentials",
        "client_id": settings.client_id,
        "client_secret": settings.client_secret,
    }


def parse_token_response(status: int, content: bytes, reason: str | None, token_url: str) -> tuple[str, float]:
    """
    Read an OAuth2 token response; return the access token (masked from now on) and its lifetime.

    :raises PrisjaktAPIError: when the token endpoint refused or answered something unreadable.
    """
    if status != 200:
        raise api_error_from_response(status, content, reason=reason, method="POST", path=urlsplit(token_url).path)
    try:
        payload = decode_json(content)
        token = str(payload["access_token"])
        expires_in = float(payload.get("expires_in") or DEFAULT_TOKEN_LIFETIME_SECONDS)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise PrisjaktServerError(
            status, "Unreadable token response", "the token endpoint did not return an access_token"
        ) from None
    mask_secret(token)
    return token, expires_in


@dataclass(frozen=True)
class AccessToken:
    """
    A bearer token and when to stop using it.

    :param value: the token.
    :param expires_at: the clock reading after which it is renewed.
    """

    value: str
    expires_at: float


class TokenCache:
    """
    Keeps one OAuth2 token until shortly before it expires.

    :param clock: a monotonic clock in seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._token: AccessToken | None = None

    @property
    def token(self) -> str | None:
        """The cached token while it is still good, else ``None``."""
        if self._token is None or self._token.expires_at <= self.clock():
            return None
        return self._token.value

    def put(self, token: str, expires_in: float) -> str:
        """Keep ``token`` for ``expires_in`` seconds less a safety margin; return it."""
        self._token = AccessToken(token, self.clock() + max(0.0, expires_in - TOKEN_EXPIRY_MARGIN_SECONDS))
        return token

    def clear(self) -> None:
        """Forget the token, e.g. after the API refused it with a 401."""
        self._token = None


class Credentials:
    """What both auths share: the settings, the token cache, and the rule of where credentials go."""

    def __init__(self, settings: ConnectionSettings, *, user_agent: str, cache: TokenCache | None = None) -> None:
        self.settings = settings
        self.user_agent = user_agent
        self.cache = cache if cache is not None else TokenCache()

    @property
    def refreshable(self) -> bool:
        """Whether a 401 may be cured by fetching a new token (OAuth2 only)."""
        return self.settings.auth_type == OAUTH2

    @property
    def token(self) -> str | None:
        """The cached OAuth2 token, if any (``None`` for header credentials)."""
        return self.cache.token

    def invalidate(self) -> None:
        """Forget the token, so the next request fetches a new one."""
        self.cache.clear()

    def may_receive(self, url: str | None) -> bool:
        """Tell whether ``url`` is on the API's origin, the only place credentials go."""
        return bool(url) and same_origin(str(url), self.settings.base_url)


class PrisjaktAuth(Credentials, requests.auth.AuthBase):
    """
    A ``requests`` auth adding credentials only to requests for the configured API origin.

    A redirect or a URL to another host therefore never carries the client secret or the token.

    :param settings: the connection's settings.
    :param user_agent: the User-Agent of token requests.
    :param cache: where the OAuth2 token is kept.
    """

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self.may_receive(request.url):
            return request
        token = self.bearer_token() if self.refreshable else None
        request.headers.update(credential_headers(self.settings, token))
        return request

    def bearer_token(self) -> str:
        """Return the cached OAuth2 token, fetching a new one when there is none or it is about to expire."""
        cached = self.cache.token
        if cached is not None:
            return cached
        settings = self.settings
        try:
            response = requests.post(
                settings.token_url,
                data=token_request_form(settings),
                headers={"User-Agent": self.user_agent, "Accept": "application/json"},
                timeout=settings.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as err:
            raise PrisjaktServerError(
                503, "Token endpoint unreachable", f"{type(err).__name__} calling the OAuth2 token URL"
            ) from None
        return self.cache.put(
            *parse_token_response(response.status_code, response.content, response.reason, settings.token_url)
        )


class AsyncPrisjaktAuth(Credentials):
    """
    The async counterpart of :class:`PrisjaktAuth`, for ``aiohttp`` requests in the triggerer.

    :param settings: the connection's settings.
    :param user_agent: the User-Agent of token requests.
    :param cache: where the OAuth2 token is kept.
    """

    async def headers_for(self, session: aiohttp.ClientSession, url: str) -> dict[str, str]:
        """Return the credential headers for a request to ``url``: none unless it is on the API's origin."""
        if not self.may_receive(url):
            return {}
        token = await self.bearer_token(session) if self.refreshable else None
        return credential_headers(self.settings, token)

    async def bearer_token(self, session: aiohttp.ClientSession) -> str:
        """Return the cached OAuth2 token, fetching a new one when needed."""
        cached = self.cache.token
        if cached is not None:
            return cached
        settings = self.settings
        async with session.post(
            settings.token_url,
            data=token_request_form(settings),
            headers={"User-Agent": self.user_agent, "Accept": "application/json"},
            allow_redirects=False,
        ) as response:
            content = await response.read()
            return self.cache.put(*parse_token_response(response.status, content, response.reason, settings.token_url))
