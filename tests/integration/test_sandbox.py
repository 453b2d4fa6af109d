"""Tests of the Prisjakt sandbox itself, over real HTTP."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import pytest
import requests

from airflow_provider_prisjakt.testing import FaultConfig, PrisjaktSandbox, SandboxConfig

pytestmark = pytest.mark.integration

Factory = Callable[..., PrisjaktSandbox]
OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def auth(sb: PrisjaktSandbox) -> dict[str, str]:
    return {"client-id": sb.client_id, "client-secret": sb.client_secret}


def get(sb: PrisjaktSandbox, path: str, **kwargs: Any) -> requests.Response:
    headers = kwargs.pop("headers", auth(sb))
    kwargs.setdefault("timeout", 10)
    return requests.get(f"{sb.base_url}{path}", headers=headers, **kwargs)


def events_path(sb: PrisjaktSandbox, index: int = 0) -> str:
    return f"/pixels/{sb.pixel_ids()[index]}/events"


def window(start: datetime = OCT, end: datetime = NOV) -> dict[str, str]:
    return {"from": start.isoformat(), "to": end.isoformat()}


def assert_problem(resp: requests.Response, status: int, title: str) -> dict[str, Any]:
    assert resp.status_code == status
    body = resp.json()
    assert body["status"] == status
    assert body["title"] == title
    assert isinstance(body["detail"], str)
    assert body["detail"]
    uuid.UUID(body["context"]["request-id"])
    return body


def follow(sb: PrisjaktSandbox, path: str, params: dict[str, str]) -> list[requests.Response]:
    """Fetch the first page, then follow rel=next verbatim (resolving relative links)."""
    pages: list[requests.Response] = []
    url: str | None = f"{sb.base_url}{path}"
    query: dict[str, str] | None = params
    with requests.Session() as session:
        while url is not None:
            resp = session.get(url, params=query, headers=auth(sb), timeout=10)
            assert resp.status_code == 200, resp.text
            pages.append(resp)
            query = None
            nxt = resp.links.get("next")
            url = urljoin(resp.url, nxt["url"]) if nxt else None
            assert len(pages) < 1000
    return pages


def rows(resp: requests.Response) -> list[dict[str, Any]]:
    body = resp.json()
    return body["data"] if isinstance(body, dict) else body


# -- auth ------------------------------------------------------------------------------


def test_missing_and_wrong_credentials_give_401_without_leaking_the_secret(prisjakt_sandbox: PrisjaktSandbox) -> None:
    sb = prisjakt_sandbox
    assert_problem(get(sb, "/shops/4242/pixels", headers={}), 401, "Unauthorized")
    wrong = {"client-id": sb.client_id, "client-secret": "nope"}
    body = assert_problem(get(sb, "/shops/4242/pixels", headers=wrong), 401, "Unauthorized")
    assert get(sb, "/shops/4242/pixels").status_code == 200
    for record in sb.requests:
        assert sb.client_secret not in repr(record)
    assert sb.client_secret not in json.dumps(body)


def test_publisher_gets_403_on_read_endpoints_but_reads_its_own_client(prisjakt_sandbox: PrisjaktSandbox) -> None:
    sb = prisjakt_sandbox
    pub = {"client-id": sb.publisher_client_id, "client-secret": sb.publisher_client_secret}
    event = rows(get(sb, events_path(sb), params=window()))[0]
    for path, params in [
        ("/shops/4242/pixels", {}),
        (events_path(sb), window()),
        (f"/pixels/{sb.pixel_ids()[0]}/purchase-summary", window()),
        (f"/events/{event['id']}", {}),
        (f"/clicks/{event['click_id']}", {}),
    ]:
        assert_problem(get(sb, path, params=params, headers=pub), 403, "Forbidden")
    me = get(sb, f"/clients/{sb.publisher_client_id}", headers=pub)
    assert me.json() == {"id": sb.publisher_client_id, "roles": ["event_publisher"]}
    assert get(sb, f"/clients/{sb.client_id}").json() == {"id": sb.client_id, "roles": ["shop_user"]}
    assert_problem(get(sb, f"/clients/{sb.publisher_client_id}"), 404, "Client not found")


def test_oauth2_token_flow_and_expiry(prisjakt_sandbox: PrisjaktSandbox) -> None:
    sb = prisjakt_sandbox
    form = {"grant_type": "client_credentials", "client_id": sb.client_id, "client_secret": sb.client_secret}
    token = requests.post(sb.token_url, data=form, timeout=10)
    assert token.status_code == 200
    body = token.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86399
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    resp = get(sb, "/shops/4242/pixels", headers=bearer)
    assert resp.status_code == 200
    assert len(resp.json()) == 3
    assert sb.requests[-1].client_id == sb.client_id
    assert all(body["access_token"] not in repr(r) for r in sb.requests)
    sb.expire_tokens()
    assert_problem(get(sb, "/shops/4242/pixels", headers=bearer), 401, "Unauthorized")
    bad = requests.post(sb.token_url, data={**form, "client_secret": "x"}, timeout=10)
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_client"}
    grant = requests.post(sb.token_url, data={**form, "grant_type": "password"}, timeout=10)
    assert grant.status_code == 400


def test_auth_modes_restrict_schemes(prisjakt_sandbox_factory: Factory) -> None:
    headers_only = prisjakt_sandbox_factory(auth_mode="headers")
    assert requests.post(headers_only.token_url, data={}, timeout=10).status_code == 404
    oauth_only = prisjakt_sandbox_factory(auth_mode="oauth2")
    assert_problem(get(oauth_only, "/shops/4242/pixels"), 401, "Unauthorized")
    form = {
        "grant_type": "client_credentials",
        "client_id": oauth_only.client_id,
        "client_secret": oauth_only.client_secret,
    }
    token = requests.post(oauth_only.token_url, data=form, timeout=10).json()["access_token"]
    assert get(oauth_only, "/shops/4242/pixels", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# -- errors and validation -------------------------------------------------------------


def test_validation_errors_and_not_found(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(problem_content_type="application/problem+json")
    body = assert_problem(get(sb, "/shops/alfa/pixels"), 400, "Bad Request")
    assert body["field_errors"] == {"shop_id": {"message": "invalid integer", "value": "alfa"}}
    resp = get(sb, "/shops/121213/pixels")
    assert resp.headers["Content-Type"] == "application/problem+json"
    body = assert_problem(resp, 404, "Shop not found")
    assert body["detail"] == "A shop with ID 121213 could not be found"
    assert (
        "pixel_id" in assert_problem(get(sb, "/pixels/abc/events", params=window()), 400, "Bad Request")["field_errors"]
    )
    unknown = str(uuid.UUID(int=1))
    body = assert_problem(get(sb, f"/pixels/{unknown}/events", params=window()), 404, "Pixel not found")
    assert body["detail"] == f"A pixel with ID {unknown} could not be found"
    assert_problem(get(sb, f"/events/{uuid.uuid4()}"), 404, "Event not found")
    assert_problem(get(sb, f"/clicks/{uuid.uuid4()}"), 404, "Click not found")
    assert_problem(get(sb, "/nothing/here"), 404, "Not Found")
    ids = {get(sb, "/nothing").json()["context"]["request-id"] for _ in range(3)}
    assert len(ids) == 3
    assert requests.get(f"{sb.base_url}/health", timeout=10).json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"to": "2026-10-02"}, "from"),
        ({"from": "2026-10-01"}, "to"),
        ({"from": "yesterday", "to": "2026-10-02"}, "from"),
        ({"from": "2026-10-02", "to": "2026-10-02"}, "to"),
        ({"from": "2026-10-01", "to": "2026-10-02", "limit": "1001"}, "limit"),
        ({"from": "2026-10-01", "to": "2026-10-02", "limit": "x"}, "limit"),
        ({"from": "2026-10-01", "to": "2026-10-02", "cursor": "%%%"}, "cursor"),
    ],
)
def test_bad_query_parameters_give_field_errors(
    prisjakt_sandbox: PrisjaktSandbox, params: dict[str, str], field: str
) -> None:
    body = assert_problem(get(prisjakt_sandbox, events_path(prisjakt_sandbox), params=params), 400, "Bad Request")
    assert set(body["field_errors"]) == {field}
    assert set(body["field_errors"][field]) == {"message", "value"}


def test_interval_may_be_at_most_60_days(prisjakt_sandbox: PrisjaktSandbox) -> None:
    sb = prisjakt_sandbox
    start = datetime(2026, 9, 1, tzinfo=UTC)
    too_long = window(start, start + timedelta(days=60, seconds=1))
    body = assert_problem(get(sb, events_path(sb), params=too_long), 400, "Bad Request")
    assert body["detail"] == "The interval between from and to may be at most 60 days"
    assert "to" in body["field_errors"]
    summary_path = f"/pixels/{sb.pixel_ids()[0]}/purchase-summary"
    assert get(sb, summary_path, params=too_long).status_code == 400
    assert get(sb, events_path(sb), params=window(start, start + timedelta(days=60))).status_code == 200
    offset_form = {"from": "2026-10-01T02:00:00+02:00", "to": "2026-10-02T00:00:00Z"}
    assert get(sb, events_path(sb), params=offset_form).status_code == 200


# -- pagination ------------------------------------------------------------------------


def test_pagination_visits_every_seeded_event_exactly_once(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=950)
    pages = follow(sb, events_path(sb), window())
    got = [e["id"] for page in pages for e in rows(page)]
    expected = [e["id"] for e in sb.expected_events(sb.pixel_ids()[0], OCT, NOV)]
    assert len(expected) == 950
    assert got == expected
    times = [e["event_time"] for page in pages for e in rows(page)]
    assert times == sorted(times, reverse=True)
    keys = Counter(r.page_key for r in sb.requests if r.page_key)
    assert len(keys) == 10
    assert set(keys.values()) == {1}
    first, middle, last = pages[0].links, pages[4].links, pages[-1].links
    assert set(first) == {"first", "next", "last"}
    assert set(middle) == {"first", "prev", "next", "last"}
    assert set(last) == {"first", "prev", "last"}
    assert len(rows(pages[-1])) == 50


def test_single_page_has_no_link_header_and_limit_is_honoured(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=30)
    resp = get(sb, events_path(sb), params=window())
    assert "Link" not in resp.headers
    assert len(resp.json()) == 30
    resp = get(sb, events_path(sb), params={**window(), "limit": "7"})
    assert len(resp.json()) == 7
    assert parse_qs(urlsplit(resp.links["next"]["url"]).query)["limit"] == ["7"]
    assert len(follow(sb, events_path(sb), {**window(), "limit": "7"})) == 5
    pixels = get(sb, "/shops/4242/pixels").json()
    assert [p["id"] for p in pixels] == sb.pixel_ids(4242)
    assert {p["shop_id"] for p in pixels} == {4242}


def test_object_envelope(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(envelope="object", events_per_pixel=250)
    body = get(sb, events_path(sb), params=window()).json()
    assert set(body) == {"data", "meta"}
    assert body["meta"] == {"count": 100}
    assert len(body["data"]) == 100
    assert get(sb, "/shops/4343/pixels").json()["meta"] == {"count": 1}
    assert sum(len(rows(p)) for p in follow(sb, events_path(sb), window())) == 250


@pytest.mark.parametrize(("style", "prefix"), [("path", "/click-conversion/pixels/"), ("relative", "events?")])
def test_link_styles_resolve_to_the_same_pages(prisjakt_sandbox_factory: Factory, style: str, prefix: str) -> None:
    sb = prisjakt_sandbox_factory(link_style=style, events_per_pixel=300)
    resp = get(sb, events_path(sb), params=window())
    assert resp.links["next"]["url"].startswith(prefix)
    ids = [e["id"] for p in follow(sb, events_path(sb), window()) for e in rows(p)]
    assert ids == [e["id"] for e in sb.expected_events(sb.pixel_ids()[0], OCT, NOV)]


def test_absolute_links_and_combined_upper_case_rels(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=300, combined_rels=True, rel_case="upper")
    first = get(sb, events_path(sb), params=window())
    assert first.links["NEXT"]["url"].startswith(sb.base_url + events_path(sb))
    second = requests.get(first.links["NEXT"]["url"], headers=auth(sb), timeout=10)
    assert 'rel="NEXT LAST"' in second.headers["Link"]
    assert second.links["NEXT LAST"]["url"] == first.links["LAST"]["url"]


def test_link_modes(prisjakt_sandbox_factory: Factory) -> None:
    foreign = prisjakt_sandbox_factory(link_mode="foreign", events_per_pixel=300)
    assert urlsplit(get(foreign, events_path(foreign), params=window()).links["next"]["url"]).hostname == "203.0.113.9"
    loop = prisjakt_sandbox_factory(link_mode="loop", events_per_pixel=300)
    page2_url = get(loop, events_path(loop), params=window()).links["next"]["url"]
    page2 = requests.get(page2_url, headers=auth(loop), timeout=10)
    assert page2.links["next"]["url"] == page2_url
    bad = prisjakt_sandbox_factory(link_mode="malformed", events_per_pixel=300)
    header = get(bad, events_path(bad), params=window()).headers["Link"]
    assert header.startswith("<")
    assert ">" not in header.split(";")[0]


def test_new_events_during_paging_repeat_an_event(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=300, new_events_per_page=1)
    ids = [e["id"] for p in follow(sb, events_path(sb), window()) for e in rows(p)]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert duplicates, "offset paging must repeat an event when new ones arrive"
    reference = prisjakt_sandbox_factory(events_per_pixel=300)
    assert set(ids) >= {e["id"] for e in reference.expected_events(reference.pixel_ids()[0], OCT, NOV)}


def test_add_events_arrive_at_the_newest_end(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=100)
    pid = sb.pixel_ids()[0]
    before = get(sb, events_path(sb), params=window()).json()
    sb.add_events(pid, 5)
    after = get(sb, events_path(sb), params=window()).json()
    assert [e["id"] for e in after[5:]] == [e["id"] for e in before[:95]]
    assert all(e["event_time"] >= before[0]["event_time"] for e in after[:5])
    assert after[0]["event_time"] < "2026-11-01T00:00:00Z"
    assert get(sb, f"/events/{after[0]['id']}").json() == after[0]
    assert [e["id"] for e in sb.expected_events(pid, OCT, NOV)][:100] == [e["id"] for e in after]


# -- data ------------------------------------------------------------------------------


def test_seed_is_deterministic_and_well_formed(prisjakt_sandbox_factory: Factory) -> None:
    a, b = prisjakt_sandbox_factory(), prisjakt_sandbox_factory()
    other = prisjakt_sandbox_factory(seed=7)
    assert a.pixel_ids() == b.pixel_ids()
    assert a.client_id == b.client_id
    assert len(a.client_id) == 32
    assert len(a.client_secret) == 30
    assert other.pixel_ids() != a.pixel_ids()
    assert other.client_id != a.client_id
    page_a = get(a, events_path(a), params=window()).json()
    assert page_a == get(b, events_path(b), params=window()).json()
    assert len({e["id"] for e in page_a}) == 100
    for event in page_a:
        assert uuid.UUID(event["id"]).version == 4
        assert uuid.UUID(event["click_id"]).version == 4
        assert event["event_name"] == "purchase"
        assert event["external_event_id"].startswith("order-")
        assert len(event["event_time"]) == 20
        assert event["event_time"].endswith("Z")
        data = event["data"]
        assert 10 <= data["amount"] <= 5000
        assert round(data["amount"], 2) == data["amount"]
        assert data["currency"] in {"DKK", "EUR", "GBP", "NOK", "NZD", "SEK"}
        assert 1 <= data["number_of_items"] <= 5
    currencies = Counter(e["data"]["currency"] for e in a.expected_events(a.pixel_ids()[0], OCT, NOV))
    assert currencies.most_common(1)[0][0] == "SEK"


def test_event_and_click_lookup(prisjakt_sandbox: PrisjaktSandbox) -> None:
    sb = prisjakt_sandbox
    event = get(sb, events_path(sb, 2), params=window()).json()[17]
    assert get(sb, f"/events/{event['id']}").json() == event
    assert get(sb, f"/events/{event['id'].upper()}").status_code == 200
    click = get(sb, f"/clicks/{event['click_id']}").json()
    assert click["id"] == event["click_id"]
    assert click["pixel_id"] == sb.pixel_ids()[2] == sb.pixel_of_event(event["id"])
    assert click["shop_id"] == 4242
    assert click["currency"] == event["data"]["currency"]
    clicked = datetime.fromisoformat(click["clicked_at"])
    happened = datetime.fromisoformat(event["event_time"])
    assert timedelta(minutes=1) <= happened - clicked <= timedelta(days=30)
    assert 0.5 <= click["cost"] <= 15
    assert isinstance(click["product_id"], int)
    tampered = event["id"][:-1] + ("0" if event["id"][-1] != "0" else "1")
    assert get(sb, f"/events/{tampered}").status_code == 404


def test_purchase_summary_matches_the_events(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=500)
    pid = sb.pixel_ids()[1]
    start, end = datetime(2026, 10, 3, tzinfo=UTC), datetime(2026, 10, 20, tzinfo=UTC)
    summary = get(sb, f"/pixels/{pid}/purchase-summary", params=window(start, end)).json()
    assert summary == sb.expected_purchase_summary(pid, start, end)
    totals: dict[str, float] = {}
    counts: Counter[str] = Counter()
    for event in sb.expected_events(pid, start, end):
        counts[event["data"]["currency"]] += 1
        totals[event["data"]["currency"]] = totals.get(event["data"]["currency"], 0) + event["data"]["amount"]
    assert [c["currency"] for c in summary["currencies"]] == sorted(counts)
    for entry in summary["currencies"]:
        assert entry["count"] == counts[entry["currency"]]
        assert entry["total_amount"] == pytest.approx(totals[entry["currency"]], abs=0.01)


def test_millions_of_events_are_served_without_materialising_them(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=5_000_000)
    started = time.monotonic()
    first = get(sb, events_path(sb), params={**window(datetime(2026, 10, 10, tzinfo=UTC)), "limit": "1000"})
    assert len(first.json()) == 1000
    last = requests.get(first.links["last"]["url"], headers=auth(sb), timeout=10).json()
    assert last[-1]["event_time"] >= "2026-10-10T00:00:00Z"
    assert get(sb, f"/events/{last[-1]['id']}").json() == last[-1]
    assert time.monotonic() - started < 5


# -- rate limiting ---------------------------------------------------------------------


def test_rate_limit_headers_and_429_duration_style(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(rate_limit=3, rate_window=60, retry_after=True)
    remaining = []
    for _ in range(2):
        resp = get(sb, "/shops/4242/pixels")
        assert resp.headers["X-RateLimit-Limit"] == "3"
        remaining.append(resp.headers["X-RateLimit-Remaining"])
    wrong = get(sb, "/shops/4242/pixels", headers={"client-id": sb.client_id, "client-secret": "x"})
    assert wrong.status_code == 401
    assert wrong.headers["X-RateLimit-Remaining"] == "0"
    assert remaining == ["2", "1"]
    limited = get(sb, "/shops/4242/pixels")
    assert_problem(limited, 429, "Too Many Requests")
    assert 55_000 <= int(limited.headers["X-RateLimit-Reset"]) <= 60_000
    assert 55 <= int(limited.headers["Retry-After"]) <= 60
    other = get(sb, "/shops/4242/pixels", headers={"client-id": sb.publisher_client_id})
    assert other.headers["X-RateLimit-Remaining"] == "2"
    sb.reset_rate_limit()
    assert get(sb, "/shops/4242/pixels").status_code == 200


def test_rate_limit_epoch_style(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(rate_limit=1, rate_window=30, reset_style="epoch")
    now_ms = time.time() * 1000
    assert get(sb, "/shops/4242/pixels").status_code == 200
    limited = get(sb, "/shops/4242/pixels")
    assert limited.status_code == 429
    assert "Retry-After" not in limited.headers
    assert now_ms + 29_000 <= int(limited.headers["X-RateLimit-Reset"]) <= time.time() * 1000 + 30_000


def test_short_window_resets(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(rate_limit=1, rate_window=0.2)
    assert get(sb, "/shops/4242/pixels").status_code == 200
    limited = get(sb, "/shops/4242/pixels")
    assert limited.status_code == 429
    time.sleep(int(limited.headers["X-RateLimit-Reset"]) / 1000 + 0.02)  # waiting for the window is the point
    assert get(sb, "/shops/4242/pixels").status_code == 200


# -- faults ----------------------------------------------------------------------------


def test_fail_next_kinds_are_observable(prisjakt_sandbox: PrisjaktSandbox) -> None:
    sb = prisjakt_sandbox
    sb.fail_next("500")
    assert_problem(get(sb, "/shops/4242/pixels"), 500, "Internal Server Error")
    sb.fail_next("503", count=2)
    assert [get(sb, "/shops/4242/pixels").status_code for _ in range(3)] == [503, 503, 200]
    sb.fail_next("html502")
    html = get(sb, "/shops/4242/pixels")
    assert html.status_code == 502
    assert html.headers["Content-Type"].startswith("text/html")
    assert "Bad Gateway" in html.text
    sb.fail_next("drop")
    with pytest.raises(requests.ConnectionError):
        get(sb, "/shops/4242/pixels")
    sb.fail_next("truncate")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(sb, events_path(sb), params=window())
    sb.fail_next("429", reset_ms=250)
    burst = get(sb, "/shops/4242/pixels")
    assert burst.status_code == 429
    assert burst.headers["X-RateLimit-Remaining"] == "0"
    assert burst.headers["X-RateLimit-Reset"] == "250"
    sb.fail_next("redirect", location=f"{sb.base_url}/health")
    moved = get(sb, "/shops/4242/pixels", allow_redirects=False)
    assert moved.status_code == 302
    assert moved.headers["Location"] == f"{sb.base_url}/health"
    sb.fail_next("stall", seconds=0.3)
    started = time.monotonic()
    assert get(sb, "/shops/4242/pixels").status_code == 200
    assert time.monotonic() - started >= 0.3
    faults = [r.fault for r in sb.requests if r.fault]
    assert faults == ["500", "503", "503", "html502", "drop", "truncate", "429", "redirect", "stall"]
    assert [r.status for r in sb.requests if r.fault == "drop"] == [0]
    with pytest.raises(ValueError):
        sb.fail_next("teapot")


def test_faults_skip_token_and_health(prisjakt_sandbox: PrisjaktSandbox) -> None:
    sb = prisjakt_sandbox
    sb.fail_next("500")
    assert requests.get(f"{sb.base_url}/health", timeout=10).status_code == 200
    form = {"grant_type": "client_credentials", "client_id": sb.client_id, "client_secret": sb.client_secret}
    assert requests.post(sb.token_url, data=form, timeout=10).status_code == 200
    assert get(sb, "/shops/4242/pixels").status_code == 500


def test_random_faults_are_deterministic(prisjakt_sandbox_factory: Factory) -> None:
    faults = FaultConfig(seed=7, error_rate=0.2, html_error_rate=0.1, burst_429_rate=0.1, burst_length=2)

    def statuses(sb: PrisjaktSandbox) -> list[int]:
        return [get(sb, "/shops/4242/pixels").status_code for _ in range(40)]

    first = statuses(prisjakt_sandbox_factory(faults=faults))
    assert first == statuses(prisjakt_sandbox_factory(faults=faults))
    assert 200 in first
    assert 429 in first
    assert 502 in first
    assert {500, 503} & set(first)
    sb = prisjakt_sandbox_factory(faults=FaultConfig(burst_429_rate=1.0, burst_length=3, burst_reset_ms=500))
    assert [get(sb, "/shops/4242/pixels").headers["X-RateLimit-Reset"] for _ in range(3)] == ["500"] * 3
    sb.configure(faults=FaultConfig())
    assert get(sb, "/shops/4242/pixels").status_code == 200


def test_stop_ends_a_stall_promptly(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(faults=FaultConfig(stall_rate=1.0, stall_seconds=30))
    outcome: list[object] = []
    arrived = threading.Event()

    def call() -> None:
        arrived.set()
        try:
            outcome.append(get(sb, "/shops/4242/pixels").status_code)
        except requests.RequestException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    arrived.wait(5)
    started = time.monotonic()
    sb.stop()
    worker.join(10)
    assert not worker.is_alive()
    assert outcome
    assert time.monotonic() - started < 5


def test_a_stalled_request_a_client_gave_up_on_is_recorded_when_its_stall_ends(
    prisjakt_sandbox: PrisjaktSandbox,
) -> None:
    sb = prisjakt_sandbox
    sb.fail_next("stall", seconds=1.0)
    with pytest.raises(requests.Timeout):
        get(sb, "/shops/4242/pixels", timeout=0.2)

    assert [r.fault for r in sb.requests] == []  # still stalled: its answer is not decided yet
    assert sb.wait_until_recorded(timeout=5)
    assert [r.fault for r in sb.requests] == ["stall"]


# -- request log and connection helpers ------------------------------------------------


def test_request_log(prisjakt_sandbox: PrisjaktSandbox) -> None:
    sb = prisjakt_sandbox
    get(sb, events_path(sb), params={**window(), "limit": "5"})
    get(sb, "/shops/4242/pixels", headers={})
    log = sb.requests
    assert [(r.method, r.status) for r in log] == [("GET", 200), ("GET", 401)]
    assert log[0].path == f"/click-conversion{events_path(sb)}"
    assert log[0].query["limit"] == ["5"]
    assert log[0].client_id == sb.client_id
    assert log[1].client_id is None
    assert log[0].page_key == f"{sb.pixel_ids()[0]}:2026-10-01T00:00:00Z:2026-11-01T00:00:00Z:0"
    assert log[0].started_at <= log[1].started_at
    log.clear()
    assert len(sb.requests) == 2
    sb.clear_requests()
    assert sb.requests == []


def test_connection_helpers(prisjakt_sandbox: PrisjaktSandbox) -> None:
    sb = prisjakt_sandbox
    conn = json.loads(sb.connection_json(page_size=500))
    assert conn == {
        "conn_type": "prisjakt",
        "host": sb.base_url,
        "login": sb.client_id,
        "password": sb.client_secret,
        "extra": {"page_size": 500},
    }
    assert sb.base_url == f"{sb.origin}/click-conversion"
    assert sb.token_url == f"{sb.origin}/oauth2/token"
    uri = urlsplit(sb.connection_uri(auth_mode="oauth2"))
    assert uri.scheme == "prisjakt"
    assert uri.port == sb.port
    assert uri.path == "/click-conversion"
    assert unquote(uri.username or "") == sb.client_id
    assert unquote(uri.password or "") == sb.client_secret
    assert parse_qs(uri.query) == {"protocol": ["http"], "auth_mode": ["oauth2"]}
    complex_uri = urlsplit(sb.connection_uri(page_size=5))
    assert json.loads(parse_qs(complex_uri.query)["__extra__"][0]) == {"protocol": "http", "page_size": 5}


def test_context_manager_and_factory_ports(prisjakt_sandbox_factory: Factory) -> None:
    with PrisjaktSandbox(SandboxConfig(events_per_pixel=10)) as sb:
        assert get(sb, "/shops/4343/pixels").status_code == 200
        url = sb.base_url
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=2)
    a, b = prisjakt_sandbox_factory(), prisjakt_sandbox_factory()
    assert a.port != b.port


def test_cli_serves_and_stops_on_sigterm() -> None:
    cmd = [
        sys.executable,
        "-m",
        "airflow_provider_prisjakt.testing",
        "serve",
        "--port",
        "0",
        "--events-per-pixel",
        "10",
    ]
    # No PYTHONUNBUFFERED: the CLI itself must flush once it is listening.
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            lines: list[str] = []
            for line in proc.stdout:
                lines.append(line.strip())
                if line.startswith("READY "):
                    break
            base_url = lines[-1].split(" ", 1)[1]
            conn_line = next(x for x in lines if x.startswith("AIRFLOW_CONN_PRISJAKT_DEFAULT="))
            conn = json.loads(conn_line.split("=", 1)[1].strip("'"))
            assert conn["host"] == base_url
            headers = {"client-id": conn["login"], "client-secret": conn["password"]}
            resp = requests.get(f"{base_url}/shops/4242/pixels", headers=headers, timeout=10)
            assert resp.status_code == 200
            assert len(resp.json()) == 3
            assert any(conn["password"] in x for x in lines if x.startswith("Client secret"))
            # The banner says which shop each pixel belongs to and where the data lies (issue #15).
            pixels = requests.get(f"{base_url}/shops/4343/pixels", headers=headers, timeout=10).json()
            assert "Shops:          4242 (3 pixel(s)), 4343 (1 pixel(s))" in lines
            assert f"{pixels[0]['id']}  shop 4343" in lines
            assert sum(x.endswith("  shop 4242") for x in lines) == 3
            data = next(x for x in lines if x.startswith("Data:"))
            assert "10 events per pixel from 2026-10-01T00:00:00Z to 2026-11-01T00:00:00Z" in data
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


# -- API variants (issue #12: every unknown of the reference is a knob) ----------------

DOCUMENTED_EVENT_MEMBERS = {"id", "click_id", "external_event_id", "event_name", "event_time", "data"}
DOCUMENTED_DATA_MEMBERS = {"number_of_items", "amount", "currency"}


def test_events_carry_only_the_documented_members_by_default(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=50)
    pixel = sb.pixel_ids()[1]
    page = rows(get(sb, f"/pixels/{pixel}/events", params=window()))
    assert len(page) == 50
    for event in page:
        assert set(event) == DOCUMENTED_EVENT_MEMBERS
        assert set(event["data"]) == DOCUMENTED_DATA_MEMBERS
        assert sb.pixel_of_event(event["id"]) == pixel
    assert set(get(sb, f"/events/{page[0]['id']}").json()) == DOCUMENTED_EVENT_MEMBERS
    assert list(sb.expected_events(pixel, OCT, NOV)) == page
    with pytest.raises(ValueError, match="unknown event"):
        sb.pixel_of_event(str(uuid.uuid4()))

    sb.configure(event_fields="extended")
    extended = rows(get(sb, f"/pixels/{pixel}/events", params=window()))
    assert {e["pixel_id"] for e in extended} == {pixel}
    assert [{k: v for k, v in e.items() if k != "pixel_id"} for e in extended] == page
    assert get(sb, f"/events/{page[0]['id']}").json()["pixel_id"] == pixel
    assert list(sb.expected_events(pixel, OCT, NOV)) == extended


def test_click_fields(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=20)
    click_id = rows(get(sb, events_path(sb), params=window()))[0]["click_id"]
    extended = get(sb, f"/clicks/{click_id}").json()
    assert extended["pixel_id"] == sb.pixel_ids()[0]
    sb.configure(click_fields="candidates")
    candidates = get(sb, f"/clicks/{click_id}").json()
    assert set(candidates) == {"id", "shop_id", "clicked_at", "product_id", "offer_id"}
    assert candidates == {k: v for k, v in extended.items() if k in candidates}


def second(n: int) -> str:
    return (OCT + timedelta(seconds=n)).isoformat()


@pytest.mark.parametrize(
    ("bounds", "first", "last"),
    [
        ("exclusive", 10, 19),  # [from, to)
        ("inclusive", 10, 20),  # [from, to]
        ("left_open", 11, 20),  # (from, to]
    ],
)
def test_window_bounds_decide_the_events_at_the_edges(
    prisjakt_sandbox_factory: Factory, bounds: str, first: int, last: int
) -> None:
    # One event at each whole second: events sit exactly on from and on to.
    sb = prisjakt_sandbox_factory(
        window_bounds=bounds, period_start=OCT, period_end=OCT + timedelta(seconds=100), events_per_pixel=100
    )
    pixel = sb.pixel_ids()[0]
    params = {"from": second(10), "to": second(20)}
    served = rows(get(sb, f"/pixels/{pixel}/events", params=params))
    times = [datetime.fromisoformat(e["event_time"]) for e in served]
    assert times == [OCT + timedelta(seconds=n) for n in range(last, first - 1, -1)]
    assert served == list(sb.served_events(pixel, OCT + timedelta(seconds=10), OCT + timedelta(seconds=20)))
    assert len(list(sb.expected_events(pixel, OCT + timedelta(seconds=10), OCT + timedelta(seconds=20)))) == 10
    summary = get(sb, f"/pixels/{pixel}/purchase-summary", params=params).json()
    assert sum(c["count"] for c in summary["currencies"]) == len(served)
    point = get(sb, f"/pixels/{pixel}/events", params={"from": second(10), "to": second(10)})
    if bounds == "inclusive":
        assert [e["event_time"] for e in rows(point)] == [second(10).replace("+00:00", "Z")]
    else:
        assert_problem(point, 400, "Bad Request")


def test_date_only_bounds_read_whole_days_through_the_to_day(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(window_bounds="date_only", events_per_pixel=31 * 24, page_size=1000)
    pixel = sb.pixel_ids()[0]
    oct2, oct4 = datetime(2026, 10, 2, tzinfo=UTC), datetime(2026, 10, 4, tzinfo=UTC)
    # Only the dates count: 2 October 13:00 to 3 October 01:00 reads all of 2 and 3 October.
    params = {"from": "2026-10-02T13:00:00Z", "to": "2026-10-03T01:00:00+00:00"}
    served = rows(get(sb, f"/pixels/{pixel}/events", params=params))
    assert [e["id"] for e in served] == [e["id"] for e in sb.expected_events(pixel, oct2, oct4)]
    assert len(served) == 48
    assert {e["event_time"][:10] for e in served} == {"2026-10-02", "2026-10-03"}
    same_day = rows(get(sb, f"/pixels/{pixel}/events", params={"from": "2026-10-02", "to": "2026-10-02"}))
    assert len(same_day) == 24
    summary = get(sb, f"/pixels/{pixel}/purchase-summary", params=params).json()
    assert summary["currencies"] == sb.expected_purchase_summary(pixel, oct2, oct4)["currencies"]
    backwards = get(sb, f"/pixels/{pixel}/events", params={"from": "2026-10-03", "to": "2026-10-02T23:00:00Z"})
    assert_problem(backwards, 400, "Bad Request")


@pytest.mark.parametrize("style", ["epoch_seconds", "past", "garbage"])
def test_reset_styles(prisjakt_sandbox_factory: Factory, style: str) -> None:
    sb = prisjakt_sandbox_factory(rate_limit=2, rate_window=30, reset_style=style)
    before = time.time()
    resets = [get(sb, "/shops/4242/pixels").headers["X-RateLimit-Reset"] for _ in range(3)]
    after = time.time()
    assert [r.status for r in sb.requests] == [200, 200, 429]
    if style == "epoch_seconds":
        assert all(len(r) == 10 for r in resets)
        assert all(before + 29 <= int(r) <= after + 31 for r in resets)
    elif style == "past":
        # Budget left: a future epoch in ms; budget spent (Remaining 0, and the 429): already past.
        assert before * 1000 + 29_000 <= int(resets[0]) <= after * 1000 + 30_000
        assert all(int(r) < before * 1000 for r in resets[1:])
    else:
        assert {r.strip().isdigit() for r in resets} == {False}


@pytest.mark.parametrize(("form", "expected"), [("none", None), ("seconds", "30"), ("http_date", "date")])
def test_retry_after_forms_on_a_spent_budget(
    prisjakt_sandbox_factory: Factory, form: str, expected: str | None
) -> None:
    sb = prisjakt_sandbox_factory(rate_limit=1, rate_window=30, retry_after=form)
    assert "Retry-After" not in get(sb, "/shops/4242/pixels").headers
    limited = get(sb, "/shops/4242/pixels")
    assert limited.status_code == 429
    value = limited.headers.get("Retry-After")
    if expected == "date":
        assert value is not None
        wait = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        assert 28 <= wait <= 31
    else:
        assert value == expected
    assert SandboxConfig(retry_after=True).retry_after == "seconds"
    assert SandboxConfig(retry_after=False).retry_after == "none"


@pytest.mark.parametrize("form", ["seconds", "http_date"])
def test_burst_429s_can_leave_the_budget_showing(prisjakt_sandbox_factory: Factory, form: str) -> None:
    faults = FaultConfig(
        burst_429_rate=1.0, burst_length=2, burst_reset_ms=2500, burst_budget="left", burst_retry_after=form
    )
    sb = prisjakt_sandbox_factory(rate_limit=5000, faults=faults)
    answers = [get(sb, "/shops/4242/pixels") for _ in range(2)]
    assert [a.status_code for a in answers] == [429, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["4999", "4998"]
    assert all(3_590_000 <= int(a.headers["X-RateLimit-Reset"]) <= 3_600_000 for a in answers)
    for answer in answers:
        value = answer.headers["Retry-After"]
        if form == "seconds":
            assert value == "3"
        else:
            wait = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
            assert 1 <= wait <= 4


def test_fail_next_429_options(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(retry_after="http_date")
    sb.fail_next("429", reset_ms=250)  # inherits the spent-budget form: an HTTP-date
    spent = get(sb, "/shops/4242/pixels")
    assert (spent.headers["X-RateLimit-Remaining"], spent.headers["X-RateLimit-Reset"]) == ("0", "250")
    parsedate_to_datetime(spent.headers["Retry-After"])
    sb.fail_next("429", budget="left", retry_after="seconds", reset_ms=4000)
    left = get(sb, "/shops/4242/pixels")
    assert left.headers["X-RateLimit-Remaining"] == "9998"
    assert left.headers["Retry-After"] == "4"
    sb.fail_next("429", retry_after="none")
    assert "Retry-After" not in get(sb, "/shops/4242/pixels").headers
    with pytest.raises(ValueError, match="budget"):
        sb.fail_next("429", budget="plenty")
    with pytest.raises(ValueError, match="burst_retry_after"):
        FaultConfig(burst_retry_after="tomorrow")  # type: ignore[arg-type]


def test_rate_limit_headers_go_missing_on_a_seeded_share_of_responses(prisjakt_sandbox_factory: Factory) -> None:
    def present(sb: PrisjaktSandbox) -> list[bool]:
        return ["X-RateLimit-Remaining" in get(sb, "/shops/4242/pixels").headers for _ in range(40)]

    first = present(prisjakt_sandbox_factory(rate_headers_missing_rate=0.5))
    assert first == present(prisjakt_sandbox_factory(rate_headers_missing_rate=0.5))
    assert 5 <= first.count(False) <= 35
    assert present(prisjakt_sandbox_factory(rate_headers_missing_rate=0.5, seed=7)) != first
    assert all(present(prisjakt_sandbox_factory()))
    bare = prisjakt_sandbox_factory(rate_headers_missing_rate=1.0, rate_limit=1)
    answers = [get(bare, "/shops/4242/pixels") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    assert not any(name.startswith("X-RateLimit") for a in answers for name in a.headers)


@pytest.mark.parametrize(
    ("envelope", "member", "page", "empty"),
    [
        ("object", "data", lambda b: b["data"], {"data": [], "meta": {"count": 0}}),
        ("null_when_empty", "events", lambda b: b["events"], {"events": None, "meta": {"count": 0}}),
        ("nested", "data", lambda b: b["data"]["events"], {"data": {"events": []}, "meta": {"count": 0}}),
    ],
)
def test_list_envelopes(
    prisjakt_sandbox_factory: Factory, envelope: str, member: str, page: Callable[[Any], Any], empty: Any
) -> None:
    sb = prisjakt_sandbox_factory(envelope=envelope, envelope_member=member, events_per_pixel=150)
    body = get(sb, events_path(sb), params=window()).json()
    assert [e["id"] for e in page(body)] == [e["id"] for e in sb.expected_events(sb.pixel_ids()[0], OCT, NOV)][:100]
    assert body["meta"] == {"count": 100}
    september = window(datetime(2026, 9, 1, tzinfo=UTC), OCT)
    assert get(sb, events_path(sb), params=september).json() == empty
    pixels = get(sb, "/shops/4242/pixels").json()
    listed = pixels[member]["pixels"] if envelope == "nested" else pixels[member]
    assert [p["id"] for p in listed] == sb.pixel_ids(4242)


def test_data_and_errors_envelope_and_the_errors_only_fault(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(envelope="data_and_errors", events_per_pixel=30)
    body = get(sb, events_path(sb), params=window()).json()
    assert len(body["data"]) == 30
    assert body["errors"]
    assert all(set(e) == {"code", "message"} for e in body["errors"])

    plain = prisjakt_sandbox_factory(events_per_pixel=30)  # a bare-array server may still answer so
    plain.fail_next("errors")
    failed = get(plain, events_path(plain), params=window())
    assert failed.status_code == 200
    assert failed.headers["X-RateLimit-Remaining"] == "9999"
    assert failed.json()["data"] is None
    assert failed.json()["errors"][0]["message"]
    plain.configure(envelope_member="events")
    plain.fail_next("errors", status=502)
    failed = get(plain, events_path(plain), params=window())
    assert failed.status_code == 502
    assert set(failed.json()) == {"events", "errors"}
    assert [r.fault for r in plain.requests] == ["errors", "errors"]
    assert len(get(plain, events_path(plain), params=window()).json()) == 30


@pytest.mark.parametrize(
    ("config", "entries"),
    [
        ({"summary_shape": "bare_list"}, lambda b: b),
        ({"summary_shape": "wrapped_list"}, lambda b: b["summary"]),
        ({"summary_shape": "wrapped_list", "summary_member": "purchases"}, lambda b: b["purchases"]),
        ({"summary_count_member": "purchases", "summary_amount_member": "revenue"}, lambda b: b["currencies"]),
        ({"summary_amount_member": "total"}, lambda b: b["currencies"]),
        ({"summary_amount_member": "amount"}, lambda b: b["currencies"]),
        ({"summary_amount_member": "sum"}, lambda b: b["currencies"]),
    ],
)
def test_summary_shapes_carry_the_same_figures(
    prisjakt_sandbox_factory: Factory, config: dict[str, str], entries: Callable[[Any], Any]
) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=400, **config)
    pixel = sb.pixel_ids()[0]
    start, end = datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 12, tzinfo=UTC)
    body = get(sb, f"/pixels/{pixel}/purchase-summary", params=window(start, end)).json()
    count = config.get("summary_count_member", "count")
    amount = config.get("summary_amount_member", "total_amount")
    got = [{"currency": e["currency"], "count": e[count], "total_amount": e[amount]} for e in entries(body)]
    assert all(set(e) == {"currency", count, amount} for e in entries(body))
    assert got == sb.expected_purchase_summary(pixel, start, end)["currencies"]
    assert sum(e["count"] for e in got) == len(list(sb.expected_events(pixel, start, end)))
    if isinstance(body, dict):
        assert (body["from"], body["to"]) == ("2026-10-05T00:00:00Z", "2026-10-12T00:00:00Z")


def test_summary_by_currency(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(
        events_per_pixel=400,
        summary_shape="by_currency",
        summary_count_member="purchases",
        summary_amount_member="revenue",
    )
    pixel = sb.pixel_ids()[0]
    body = get(sb, f"/pixels/{pixel}/purchase-summary", params=window()).json()
    expected = sb.expected_purchase_summary(pixel, OCT, NOV)["currencies"]
    assert body == {e["currency"]: {"purchases": e["count"], "revenue": e["total_amount"]} for e in expected}
    empty = window(datetime(2026, 9, 1, tzinfo=UTC), OCT)
    assert get(sb, f"/pixels/{pixel}/purchase-summary", params=empty).json() == {}


def test_link_syntax_variants(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(events_per_pixel=250, link_split=True, link_unquoted_rel=True, link_extra_params=True)
    first = get(sb, events_path(sb), params=window())
    fields = first.raw.headers.getlist("Link")
    assert len(fields) == 3  # first, next, last: one header field each
    assert [f.split(";")[0].startswith("<") and f.count("<") == 1 for f in fields] == [True] * 3
    assert "rel=next;" in fields[1]
    assert 'title="events, page 2"' in fields[1]
    assert fields[1].index("title=") < fields[1].index("rel=") < fields[1].index("type=")
    ids = [e["id"] for page in follow(sb, events_path(sb), window()) for e in rows(page)]
    assert ids == [e["id"] for e in sb.expected_events(sb.pixel_ids()[0], OCT, NOV)]

    combined = prisjakt_sandbox_factory(events_per_pixel=250, combined_rels=True, link_unquoted_rel=True)
    second_page = requests.get(
        get(combined, events_path(combined), params=window()).links["next"]["url"], headers=auth(combined), timeout=10
    )
    assert 'rel="next last"' in second_page.headers["Link"]  # a relation list must stay quoted
    plain = prisjakt_sandbox_factory(events_per_pixel=250)
    fields = get(plain, events_path(plain), params=window()).raw.headers.getlist("Link")
    assert len(fields) == 1
    assert fields[0].count('rel="') == 3


def test_gzip_bodies_for_clients_that_accept_them(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(gzip=True, events_per_pixel=100)
    zipped = get(sb, events_path(sb), params=window())  # requests sends Accept-Encoding: gzip, deflate
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert int(zipped.headers["Content-Length"]) < len(zipped.content)
    assert rows(zipped) == list(sb.expected_events(sb.pixel_ids()[0], OCT, NOV))
    errors = get(sb, "/shops/1/pixels")
    assert errors.headers["Content-Encoding"] == "gzip"
    assert_problem(errors, 404, "Shop not found")
    for refusal in ("identity", "gzip;q=0, identity"):
        plain = get(sb, events_path(sb), params=window(), headers={**auth(sb), "Accept-Encoding": refusal})
        assert "Content-Encoding" not in plain.headers
        assert rows(plain) == rows(zipped)
    assert "Content-Encoding" not in get(prisjakt_sandbox_factory(), "/shops/4242/pixels").headers


def test_latency_delays_every_response(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(latency_ms=150)
    for path in ("/shops/4242/pixels", "/health"):
        started = time.monotonic()
        assert get(sb, path).status_code == 200
        assert time.monotonic() - started >= 0.15


def test_wait_for_requests_sees_a_request_its_client_still_waits_for(prisjakt_sandbox_factory: Factory) -> None:
    sb = prisjakt_sandbox_factory(latency_ms=30_000)
    assert not sb.wait_for_requests(1, timeout=0.01)
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(get, sb, "/health")
        assert sb.wait_for_requests(1)  # recorded while the answer is still held back
        assert not answer.done()
        sb.stop()  # ends the latency wait
        wait([answer], timeout=10)
        assert answer.done()


@pytest.mark.parametrize(
    "fields",
    [
        {"window_bounds": "sideways"},
        {"envelope": "xml"},
        {"summary_shape": "table"},
        {"summary_amount_member": "value"},
        {"reset_style": "minutes"},
        {"retry_after": "later"},
        {"event_fields": "all"},
        {"rate_headers_missing_rate": 1.5},
        {"latency_ms": -1},
        {"envelope_member": ""},
    ],
)
def test_bad_knob_values_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(fields))):
        SandboxConfig(**fields)


# -- command line ----------------------------------------------------------------------


def test_cli_default_port_is_no_airflow_port() -> None:
    from airflow_provider_prisjakt.testing.__main__ import DEFAULT_PORT, build_parser

    assert build_parser().parse_args(["serve"]).port == DEFAULT_PORT
    # api-server/webserver, worker and triggerer log servers, scheduler health check, statsd, flower
    assert DEFAULT_PORT not in {8080, 8793, 8794, 8974, 8125, 5555}


def test_cli_refuses_a_port_in_use_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "airflow_provider_prisjakt.testing", "serve", "--port", str(port)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"port {port}" in done.stderr
    assert "in use" in done.stderr
    assert "--port 0" in done.stderr


def test_retry_after_on_server_errors(prisjakt_sandbox: PrisjaktSandbox) -> None:
    sb = prisjakt_sandbox
    sb.fail_next("503", retry_after_s=3600)
    unavailable = get(sb, "/shops/4242/pixels")
    assert (unavailable.status_code, unavailable.headers["Retry-After"]) == (503, "3600")
    sb.fail_next("html502", retry_after_s=5, retry_after="http_date")
    wait = (
        parsedate_to_datetime(get(sb, "/shops/4242/pixels").headers["Retry-After"]) - datetime.now(UTC)
    ).total_seconds()
    assert 3 <= wait <= 6
    sb.fail_next("500")
    assert "Retry-After" not in get(sb, "/shops/4242/pixels").headers
    with pytest.raises(ValueError, match="retry_after"):
        sb.fail_next("503", retry_after="inherit")
