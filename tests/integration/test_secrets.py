"""The client secret and OAuth tokens never reach logs, errors or the request log."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from airflow_provider_prisjakt.exceptions import PrisjaktAuthError
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.testing import PrisjaktSandbox
from tests.conftest import KNOWN_SECRETS, register_secret

from .conftest import HookFactory, connect

START = datetime(2026, 10, 5, tzinfo=UTC)
END = datetime(2026, 10, 6, tzinfo=UTC)


def all_text(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    """Every log line of the test: stdlib records and what structlog wrote to stdout/stderr."""
    out, err = capsys.readouterr()
    return "\n".join([*(record.getMessage() for record in caplog.records), out, err])


def test_debug_logs_of_retries_and_waits_carry_no_secret(
    sandbox_hook: HookFactory, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox, hook = sandbox_hook()
    sandbox.fail_next("503", count=1)
    sandbox.fail_next("429", count=1, reset_ms=100)

    list(hook.iter_events(sandbox.pixel_ids()[0], START, END))

    text = all_text(caplog, capsys)
    assert "retry 1 of" in text  # the hook's own log lines were captured
    assert "Waiting" in text
    assert sandbox.client_secret in KNOWN_SECRETS
    assert sandbox.client_secret not in text


def test_oauth_token_is_masked_and_never_logged(
    sandbox_hook: HookFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox, _ = sandbox_hook(auth_mode="oauth2")
    hook = connect(monkeypatch, sandbox, "prisjakt_oauth_secret", auth_type="oauth2", token_url=sandbox.token_url)

    list(hook.iter_events(sandbox.pixel_ids()[0], START, END))

    token = hook.auth.token
    assert token
    register_secret(token)
    assert token not in all_text(caplog, capsys)
    assert all(token not in repr(record) for record in sandbox.requests)

    from airflow.providers.common.compat.sdk import redact

    assert token not in str(redact(f"the token is {token}"))


def test_auth_errors_never_echo_the_secret(monkeypatch: pytest.MonkeyPatch, sandbox_hook: HookFactory) -> None:
    sandbox, _ = sandbox_hook()
    secret = register_secret("s3cr3t-that-the-api-rejects-0123456789")
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_LEAK", sandbox.connection_json().replace(sandbox.client_secret, secret))
    hook = PrisjaktHook("prisjakt_leak")

    with pytest.raises(PrisjaktAuthError) as raised:
        hook.get_client()

    assert secret not in str(raised.value)
    assert secret not in repr(raised.value.__dict__)
    ok, message = hook.test_connection()
    assert not ok
    assert secret not in message


def test_secret_is_never_put_in_a_url(sandbox_hook: HookFactory) -> None:
    sandbox, hook = sandbox_hook(link_style="absolute")
    list(hook.iter_events(sandbox.pixel_ids()[0], START, END))

    assert sandbox.requests
    for record in sandbox.requests:
        assert sandbox.client_secret not in record.path
        assert all(sandbox.client_secret not in value for values in record.query.values() for value in values)


def test_loopback_sandbox_may_use_http_but_other_hosts_may_not(monkeypatch: pytest.MonkeyPatch) -> None:
    with PrisjaktSandbox() as sandbox:
        register_secret(sandbox.client_secret)
        remote = sandbox.connection_json().replace("127.0.0.1", "prisjakt.example.com")
        monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_REMOTE_HTTP", remote)

        hook = PrisjaktHook("prisjakt_remote_http")
        ok, message = hook.test_connection()

        assert not ok
        assert "http://" in message
        assert "clear text" in message
        assert sandbox.requests == []
