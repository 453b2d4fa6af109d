"""
The shared budget in a real ``redis-server`` (started by the tests, never the machine's own).

Hooks of one client id, on the connection extra ``budget_backend``, count their requests in one
window that follows the reset the server reports; the store holds no client id or secret; a
password in its URL reaches no log; a store that stops answering leaves the hooks pacing on their
own responses; and the rate-limit sensor reads the shared window instead of spending a request on
each poke.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from airflow_provider_prisjakt.api.ratelimit import RateLimitStatus
from airflow_provider_prisjakt.client.budget import RequestBudget
from airflow_provider_prisjakt.client.budget_redis import KEY_PREFIX, RedisBudgetBackend
from airflow_provider_prisjakt.hooks.connection import settings_from_connection
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.sensors.prisjakt import PrisjaktRateLimitSensor
from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from airflow_provider_prisjakt.testing.shared_budget import RedisServer, redis_server_or_skip
from tests.conftest import register_secret

pytestmark = pytest.mark.integration

CONN_ID = "prisjakt_shared"
STORE_PASSWORD = register_secret("store-password-never-logged")
START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = redis_server_or_skip(password=STORE_PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> Iterator[PrisjaktSandbox]:
    config = SandboxConfig(
        shops={4242: 2},
        events_per_pixel=45,
        page_size=10,
        period_start=START,
        period_end=END,
        rate_limit=20,
        rate_window=60,
    )
    with PrisjaktSandbox(config) as started:
        register_secret(started.client_secret)
        connection = started.connection_json(budget_backend=redis_server.url, max_inline_wait=0)
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", connection)
        yield started


def backend_for(url: str, client_id: str = "client-1") -> RedisBudgetBackend:
    settings = settings_from_connection(
        host="https://api.pj.nu/click-conversion",
        schema=None,
        port=None,
        login=client_id,
        password="client-secret",
        extra={"budget_backend": url},
    )
    return RedisBudgetBackend.for_connection(settings)


def status(remaining: int, reset_in: float, *, limit: int = 5) -> RateLimitStatus:
    now = datetime.now(UTC)
    return RateLimitStatus(limit, remaining, now + timedelta(seconds=reset_in), now)


def read_all_pages(hook: PrisjaktHook, pixel: str) -> int:
    pages = hook.iter_pages(hook.events_path(pixel), hook.window_params(START, END))
    return sum(len(page.records) for page in pages)


def test_hooks_of_one_client_id_count_their_requests_in_one_window(
    sandbox: PrisjaktSandbox, store: redis.Redis
) -> None:
    first, second = PrisjaktHook(CONN_ID), PrisjaktHook(CONN_ID)
    pixels = sandbox.pixel_ids(4242)

    read_all_pages(first, pixels[0])
    read_all_pages(second, pixels[1])

    assert first.budget.shared and second.budget.shared
    shared = first.budget.status
    assert shared is not None and shared.limit == 20
    assert shared.remaining == 20 - len(sandbox.requests) == 10  # five pages each, counted once
    assert second.rate_limit == shared


def test_the_store_holds_a_digest_of_the_client_id_never_the_id_or_the_secret(
    sandbox: PrisjaktSandbox, store: redis.Redis
) -> None:
    read_all_pages(PrisjaktHook(CONN_ID), sandbox.pixel_ids(4242)[0])

    keys = [key.decode() for key in store.keys("*")]
    assert keys and all(key.startswith(f"{KEY_PREFIX}:") for key in keys)
    stored = " ".join(keys) + " ".join(str(store.hgetall(key)) for key in keys if store.type(key) == b"hash")
    assert sandbox.client_id not in stored and sandbox.client_secret not in stored


def test_the_window_follows_the_reset_the_server_reports(store: redis.Redis, redis_server: RedisServer) -> None:
    backend = backend_for(redis_server.url)
    backend.store(status(remaining=0, reset_in=2))  # the server counted 5: the count is raised to it
    reset_at = datetime.now(UTC) + timedelta(seconds=2)

    assert backend.load() is not None and not backend.claim(datetime.now(UTC), reserve=0)
    assert backend.claim(reset_at + timedelta(seconds=0.5), reserve=0)  # sent after the reset: the next window's

    backend.store(status(remaining=3, reset_in=12))  # the first answer of the next window: two counted
    shared = backend.load()

    assert shared is not None and shared.remaining == 3
    claims = [backend.claim(datetime.now(UTC), reserve=1) for _ in range(3)]
    assert claims == [True, True, False]  # 2 counted, 2 more claimed, 1 kept for the reserve


def test_a_late_answer_from_the_last_window_changes_nothing(store: redis.Redis, redis_server: RedisServer) -> None:
    backend = backend_for(redis_server.url)
    backend.store(status(remaining=4, reset_in=20))
    backend.store(status(remaining=0, reset_in=-5))

    shared = backend.load()
    assert shared is not None and shared.remaining == 4


def test_a_password_in_the_store_s_url_reaches_no_log(
    sandbox: PrisjaktSandbox, store: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    hook = PrisjaktHook(CONN_ID)

    with caplog.at_level(logging.DEBUG):
        read_all_pages(hook, sandbox.pixel_ids(4242)[0])

    assert STORE_PASSWORD not in repr(hook.settings) + repr(hook.budget.backend)
    # The autouse leak check also reads every log record and the test's output for it.


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "wrong-password"])
def test_a_store_that_does_not_answer_leaves_the_hook_pacing_on_its_own_and_says_so_once(
    url: str, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    if url == "wrong-password":
        url = f"redis://:not-{STORE_PASSWORD}@127.0.0.1:{redis_server.port}/0"
        register_secret(f"not-{STORE_PASSWORD}")
    config = SandboxConfig(events_per_pixel=45, page_size=10, period_start=START, period_end=END)
    with PrisjaktSandbox(config) as sandbox, caplog.at_level(logging.INFO):
        register_secret(sandbox.client_secret)
        monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_DOWN", sandbox.connection_json(budget_backend=url))
        hook = PrisjaktHook("prisjakt_down")
        rows = read_all_pages(hook, sandbox.pixel_ids()[0])

    assert rows == 45
    assert hook.rate_limit is not None  # its own responses' word
    assert caplog.text.count("shared budget backend did not answer") == 1


def test_the_sensor_reads_the_shared_window_instead_of_spending_a_request_per_poke(
    sandbox: PrisjaktSandbox, store: redis.Redis
) -> None:
    read_all_pages(PrisjaktHook(CONN_ID), sandbox.pixel_ids(4242)[0])  # 5 of 20 spent, told to the store
    spent = len(sandbox.requests)

    enough = PrisjaktRateLimitSensor(task_id="enough", prisjakt_conn_id=CONN_ID, min_remaining=10)
    too_much = PrisjaktRateLimitSensor(task_id="too_much", prisjakt_conn_id=CONN_ID, min_remaining=18)

    assert [enough.poke({}) for _ in range(3)] == [True] * 3
    assert too_much.poke({}) is False
    assert len(sandbox.requests) == spent
    assert too_much._not_before is not None  # it comes back after the window's reset


def test_the_sensor_spends_one_request_when_nobody_has_told_the_store_the_window(
    sandbox: PrisjaktSandbox, store: redis.Redis
) -> None:
    waiting = PrisjaktRateLimitSensor(task_id="first", prisjakt_conn_id=CONN_ID, min_remaining=10)

    assert waiting.poke({}) is True
    assert waiting.poke({}) is True

    assert len(sandbox.requests) == 1
    assert RequestBudget.from_settings(waiting.hook.settings).status is not None
