"""
Bad input to an export task: one clear error naming the problem, and nothing written.

Each case runs ``PrisjaktToS3Operator`` against the sandbox and moto_server. It checks the error's
type and message (the field, the API's detail and its request-id where the API answered), how many
requests reached the API, and that the bucket is still empty.

Cases already covered elsewhere in the same way are not repeated here:

- unknown pixel, S3 key starting with ``/``, missing bucket, unknown ``resource`` and
  ``file_format`` at construction: ``ObjectStoreExportContract`` in ``conftest_services.py``
  (run for S3 and GCS);
- a table name carrying SQL (at construction and once rendered) and an unknown
  ``write_disposition``: ``test_prisjakt_to_sql.py``;
- a redirect to another origin drops the credentials: ``test_hook.py``;
- Link, rate-limit, problem-details, window and connection parsers fuzzed with hypothesis:
  ``tests/unit/test_pagination.py``, ``test_ratelimit.py``, ``test_exceptions.py``,
  ``test_windows.py`` and ``test_connection.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_prisjakt.exceptions import (
    PrisjaktAPIError,
    PrisjaktAuthError,
    PrisjaktConfigError,
    PrisjaktNotFoundError,
    PrisjaktPaginationError,
    PrisjaktValidationError,
)
from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig
from tests.conftest import register_secret

from .conftest import connect

pytest.register_assert_rewrite("tests.integration.conftest_services")

from .conftest_services import moto_service  # noqa: E402, F401
from .conftest_services import s3_store as s3_store_fixture  # noqa: E402, F401

if TYPE_CHECKING:
    from .conftest_services import S3Store

pytestmark = pytest.mark.integration

START = datetime(2026, 10, 5, tzinfo=UTC)
END = datetime(2026, 10, 12, tzinfo=UTC)
PREFIX = "prisjakt/events/"
FOREIGN_HOST = "203.0.113.9"  # where the sandbox's link_mode="foreign" points


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrisjaktSandbox]:
    with PrisjaktSandbox(SandboxConfig(events_per_pixel=2000, page_size=100)) as server:
        connect(monkeypatch, server)
        yield server


def export(store: S3Store, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("start", START.isoformat())
    kwargs.setdefault("end", END.isoformat())
    return store.operator(PREFIX, **kwargs).execute({})


def assert_names_the_request(error: PrisjaktAPIError) -> None:
    """The API answered: the message carries its detail and request-id."""
    assert error.request_id and error.request_id in str(error)
    assert error.detail and error.detail in str(error)


# -- credentials and roles ---------------------------------------------------------------------------


def test_a_wrong_client_secret_is_one_401_never_retried_naming_the_fix(
    sandbox: PrisjaktSandbox, s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = register_secret("not-the-secret-9f8e7d6c5b4a")
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_DEFAULT", sandbox.connection_json().replace(sandbox.client_secret, wrong))

    with pytest.raises(PrisjaktAuthError) as raised:
        export(s3_store, pixel_id=sandbox.pixel_ids(4242)[0])

    assert raised.value.status == 401
    assert_names_the_request(raised.value)
    assert "client secret (password)" in str(raised.value)
    assert wrong not in str(raised.value)
    assert len(sandbox.requests) == 1
    assert s3_store.keys() == []


def test_a_client_without_shop_user_is_one_403_naming_the_role(
    sandbox: PrisjaktSandbox, s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = sandbox.connection_json().replace(sandbox.client_id, sandbox.publisher_client_id)
    monkeypatch.setenv(
        "AIRFLOW_CONN_PRISJAKT_DEFAULT", conn.replace(sandbox.client_secret, sandbox.publisher_client_secret)
    )

    with pytest.raises(PrisjaktAuthError) as raised:
        export(s3_store, shop_id=4242)

    assert raised.value.status == 403
    assert_names_the_request(raised.value)
    assert "shop_user" in str(raised.value)
    assert len(sandbox.requests) == 1
    assert s3_store.keys() == []


# -- ids and windows ---------------------------------------------------------------------------------


def test_an_unknown_shop_is_one_404_naming_the_shop(sandbox: PrisjaktSandbox, s3_store: S3Store) -> None:
    with pytest.raises(PrisjaktNotFoundError) as raised:
        export(s3_store, shop_id=987654)

    assert raised.value.status == 404
    assert_names_the_request(raised.value)
    assert "987654" in str(raised.value)
    assert len(sandbox.requests) == 1
    assert s3_store.keys() == []


def test_a_malformed_pixel_id_is_one_400_naming_the_field(sandbox: PrisjaktSandbox, s3_store: S3Store) -> None:
    with pytest.raises(PrisjaktValidationError) as raised:
        export(s3_store, pixel_id="not-a-uuid")

    assert raised.value.status == 400
    assert "pixel_id" in raised.value.field_errors
    assert "pixel_id" in str(raised.value)
    assert raised.value.request_id and raised.value.request_id in str(raised.value)
    assert len(sandbox.requests) == 1
    assert s3_store.keys() == []


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (END, START, r"start \(2026-10-12T00:00:00Z\) must be before end \(2026-10-05T00:00:00Z\)"),
        (
            datetime.now(UTC) + timedelta(days=2),
            datetime.now(UTC) + timedelta(days=3),
            r"The window starts in the future \(.*\); no events exist there yet",
        ),
    ],
    ids=["start-after-end", "future-window"],
)
def test_a_reversed_or_future_window_is_refused_before_any_request(
    sandbox: PrisjaktSandbox, s3_store: S3Store, start: datetime, end: datetime, message: str
) -> None:
    with pytest.raises(PrisjaktConfigError, match=message):
        export(s3_store, pixel_id=sandbox.pixel_ids(4242)[0], start=start.isoformat(), end=end.isoformat())

    assert sandbox.requests == []
    assert s3_store.keys() == []


def test_a_templated_resource_rendering_to_an_unknown_name_is_refused_before_any_request(
    sandbox: PrisjaktSandbox, s3_store: S3Store
) -> None:
    operator = s3_store.operator(
        PREFIX, pixel_id=sandbox.pixel_ids(4242)[0], resource="{{ params.resource }}", start=START, end=END
    )
    operator.resource = "orders"  # as rendered

    with pytest.raises(PrisjaktConfigError, match=r"resource must be one of .*, got 'orders'"):
        operator.execute({})

    assert sandbox.requests == []
    assert s3_store.keys() == []


# -- connection settings -----------------------------------------------------------------------------


def test_plain_http_to_a_non_loopback_host_is_refused_before_any_request(
    sandbox: PrisjaktSandbox, s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = sandbox.connection_json().replace("127.0.0.1", "prisjakt.example.com")
    monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_DEFAULT", remote)

    with pytest.raises(PrisjaktConfigError) as raised:
        export(s3_store, pixel_id=sandbox.pixel_ids(4242)[0])

    assert "prisjakt_default" in str(raised.value)
    assert "http://" in str(raised.value) and "clear text" in str(raised.value)
    assert sandbox.client_secret not in str(raised.value)
    assert sandbox.requests == []
    assert s3_store.keys() == []


class HtmlProxy:
    """A proxy in front of nothing: every request gets an HTML page with ``status``."""

    def __init__(self, status: int) -> None:
        page = b"<html><head><title>Proxy</title></head><body><h1>Access denied by proxy</h1></body></html>"
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.requests += 1
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/click-conversion"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "error", "requests", "message"),
    [
        (407, PrisjaktAPIError, 1, "407 Proxy Authentication Required: non-JSON response: <html>"),
        (200, PrisjaktAPIError, 3, "a text/html body where JSON was expected (a proxy page, or the wrong host?)"),
    ],
    ids=["407-html", "200-html"],
)
def test_a_proxy_answering_with_html_is_one_clear_error(
    sandbox: PrisjaktSandbox,
    s3_store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    error: type[Exception],
    requests: int,
    message: str,
) -> None:
    proxy = HtmlProxy(status)
    try:
        conn = sandbox.connection_json(max_retries=3).replace(sandbox.base_url, proxy.url)
        monkeypatch.setenv("AIRFLOW_CONN_PRISJAKT_DEFAULT", conn)

        with pytest.raises(error) as raised:
            export(s3_store, pixel_id=sandbox.pixel_ids(4242)[0])
    finally:
        proxy.close()

    assert message in str(raised.value), str(raised.value)
    assert "/click-conversion/pixels/" in str(raised.value)
    assert proxy.requests == requests
    assert s3_store.keys() == []


# -- pagination abuse --------------------------------------------------------------------------------


@pytest.fixture
def connections_opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The host of every TCP connection urllib3 opens (requests and boto3 both connect through it)."""
    import urllib3.util.connection

    opened: list[str] = []
    create_connection = urllib3.util.connection.create_connection

    def record(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        opened.append(address[0])
        return create_connection(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", record)
    return opened


@pytest.mark.parametrize(
    ("link_mode", "message"),
    [
        ("foreign", f"http://{FOREIGN_HOST}.* is not on the configured API origin"),
        ("loop", "already fetched"),
        ("malformed", "malformed"),
    ],
)
def test_an_abusive_link_header_stops_the_export_and_nothing_is_written(
    sandbox: PrisjaktSandbox, s3_store: S3Store, connections_opened: list[str], link_mode: str, message: str
) -> None:
    sandbox.configure(link_mode=link_mode)

    with pytest.raises(PrisjaktPaginationError, match=message) as raised:
        export(s3_store, pixel_id=sandbox.pixel_ids(4242)[0], max_rows_per_file=50)

    assert "/click-conversion/pixels/" in str(raised.value)  # names the page it came from
    assert FOREIGN_HOST not in connections_opened  # no request was sent to the foreign host
    assert all(r.path.startswith("/click-conversion/pixels/") for r in sandbox.requests)
    assert len(sandbox.requests) <= 2
    assert s3_store.keys() == []
