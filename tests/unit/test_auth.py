"""Credentials: which headers, where they may go, and the OAuth2 token cache; no server."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from airflow_provider_prisjakt.client.auth import (
    TOKEN_EXPIRY_MARGIN_SECONDS,
    AsyncPrisjaktAuth,
    PrisjaktAuth,
    TokenCache,
    credential_headers,
    parse_token_response,
    token_request_form,
)
from airflow_provider_prisjakt.exceptions import PrisjaktAuthError, PrisjaktConfigError, PrisjaktServerError
from airflow_provider_prisjakt.hooks.connection import ConnectionSettings, settings_from_connection
from tests.conftest import register_secret

SECRET = register_secret("s3cr3t-auth-unit-test-client-secret")
TOKEN = register_secret("token-auth-unit-test-0123456789")
BASE = "https://api.pj.nu/click-conversion"
TOKEN_URL = "https://auth.pj.nu/oauth2/token"


def settings(auth_type: str = "headers") -> ConnectionSettings:
    return settings_from_connection(
        host=BASE, schema=None, port=None, login="client-1", password=SECRET, extra={"auth_type": auth_type}
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def prepared(url: str, auth: requests.auth.AuthBase) -> requests.PreparedRequest:
    return requests.Request("GET", url, auth=auth).prepare()


# -- headers ---------------------------------------------------------------------------------------


def test_header_credentials_are_the_client_id_and_secret() -> None:
    assert credential_headers(settings()) == {"client-id": "client-1", "client-secret": SECRET}


def test_oauth2_credentials_are_a_bearer_token() -> None:
    assert credential_headers(settings("oauth2"), TOKEN) == {"Authorization": f"Bearer {TOKEN}"}


def test_oauth2_without_a_token_is_a_configuration_error() -> None:
    with pytest.raises(PrisjaktConfigError, match="no token"):
        credential_headers(settings("oauth2"))


def test_the_token_form_is_a_client_credentials_grant() -> None:
    assert token_request_form(settings("oauth2")) == {
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": SECRET,
    }


# -- where credentials go --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/shops/4242/pixels", "/x?y=1"])
def test_requests_to_the_api_origin_carry_the_credentials(path: str) -> None:
    request = prepared(f"https://api.pj.nu{path}", PrisjaktAuth(settings(), user_agent="test"))

    assert request.headers["client-secret"] == SECRET


@pytest.mark.parametrize(
    "url", ["https://elsewhere.example/x", "http://api.pj.nu/x", "https://api.pj.nu:8443/x", "https://pj.nu/x"]
)
def test_requests_to_any_other_origin_carry_none(url: str) -> None:
    request = prepared(url, PrisjaktAuth(settings(), user_agent="test"))

    assert "client-secret" not in request.headers and "client-id" not in request.headers


def test_a_cached_token_is_used_without_asking_the_token_endpoint() -> None:
    cache = TokenCache()
    cache.put(TOKEN, 3600)
    auth = PrisjaktAuth(settings("oauth2"), user_agent="test", cache=cache)

    assert prepared(f"{BASE}/clients/x", auth).headers["Authorization"] == f"Bearer {TOKEN}"
    assert auth.token == TOKEN and auth.refreshable


def test_invalidate_forgets_the_token() -> None:
    auth = PrisjaktAuth(settings("oauth2"), user_agent="test")
    auth.cache.put(TOKEN, 3600)

    auth.invalidate()

    assert auth.token is None


def test_header_credentials_have_nothing_to_refresh() -> None:
    assert not PrisjaktAuth(settings(), user_agent="test").refreshable


async def test_the_async_auth_follows_the_same_origin_rule() -> None:
    cache = TokenCache()
    cache.put(TOKEN, 3600)
    auth = AsyncPrisjaktAuth(settings("oauth2"), user_agent="test", cache=cache)
    no_session: Any = None  # a cached token and a foreign URL need no request

    assert await auth.headers_for(no_session, f"{BASE}/clients/x") == {"Authorization": f"Bearer {TOKEN}"}
    assert await auth.headers_for(no_session, "https://elsewhere.example/x") == {}


# -- the token cache -------------------------------------------------------------------------------


def test_a_token_is_renewed_a_margin_before_it_expires() -> None:
    clock = Clock()
    cache = TokenCache(clock)
    cache.put(TOKEN, 3600)

    clock.now += 3600 - TOKEN_EXPIRY_MARGIN_SECONDS - 1
    assert cache.token == TOKEN
    clock.now += 1
    assert cache.token is None


def test_a_token_shorter_than_the_margin_is_not_reused() -> None:
    cache = TokenCache(Clock())
    cache.put(TOKEN, 30)

    assert cache.token is None


# -- token responses -------------------------------------------------------------------------------


def test_a_token_response_gives_the_token_and_its_lifetime_and_masks_the_token() -> None:
    from airflow.providers.common.compat.sdk import redact

    token = register_secret("freshly-issued-token-abcdef0123")
    body = json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 120}).encode()

    assert parse_token_response(200, body, "OK", TOKEN_URL) == (token, 120.0)
    assert token not in str(redact(f"the token is {token}"))


def test_a_token_response_without_a_lifetime_is_taken_for_an_hour() -> None:
    assert parse_token_response(200, json.dumps({"access_token": TOKEN}).encode(), "OK", TOKEN_URL)[1] == 3600.0


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"token": "x"}'])
def test_an_unreadable_token_response_is_a_server_error(body: bytes) -> None:
    with pytest.raises(PrisjaktServerError, match="did not return an access_token"):
        parse_token_response(200, body, "OK", TOKEN_URL)


def test_a_refused_token_request_is_an_auth_error_naming_the_token_path_but_no_secret() -> None:
    body = json.dumps({"title": "Unauthorized", "detail": "invalid client", "context": {"request-id": "t-1"}})

    with pytest.raises(PrisjaktAuthError) as raised:
        parse_token_response(401, body.encode(), "Unauthorized", TOKEN_URL)

    assert "POST /oauth2/token" in str(raised.value)
    assert SECRET not in str(raised.value)
