"""RFC 7807 problem parsing and the error hierarchy (pure, no network)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from airflow.exceptions import AirflowException
from airflow.providers.common.compat.sdk import AirflowFailException
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.exceptions import (
    BODY_EXCERPT_CHARS,
    REQUEST_TIMEOUT_STATUS,
    PrisjaktAPIError,
    PrisjaktAuthError,
    PrisjaktConfigError,
    PrisjaktError,
    PrisjaktNotFoundError,
    PrisjaktPaginationError,
    PrisjaktRateLimitError,
    PrisjaktServerError,
    PrisjaktValidationError,
    ProblemDetails,
    api_error_from_response,
    error_class_for_status,
    parse_problem,
)

REQUEST_ID = "96206250-bb0f-487b-a334-18192bec8592"
NOT_FOUND = {
    "title": "Pixel not found",
    "status": 404,
    "detail": "A pixel with ID 5f1c could not be found",
    "context": {"request-id": REQUEST_ID},
}
VALIDATION = {
    "title": "Bad Request",
    "status": 400,
    "detail": "Validation failed",
    "context": {"request-id": REQUEST_ID},
    "field_errors": {
        "shopId": {"message": "invalid integer", "value": "alfa"},
        "from": {"message": "must be before to"},
    },
}

# -- parse_problem -------------------------------------------------------------------------------


@pytest.mark.parametrize("encode", [json.dumps, lambda data: json.dumps(data).encode()])
def test_problem_body_gives_title_status_detail_and_request_id(encode: Callable[[object], str | bytes]) -> None:
    assert parse_problem(encode(NOT_FOUND)) == ProblemDetails(
        title="Pixel not found",
        status=404,
        detail="A pixel with ID 5f1c could not be found",
        request_id=REQUEST_ID,
    )


def test_field_errors_are_flattened_with_the_rejected_value() -> None:
    problem = parse_problem(json.dumps(VALIDATION))
    assert problem is not None
    assert problem.field_errors == {"shopId": "invalid integer (got 'alfa')", "from": "must be before to"}


def test_field_errors_of_other_shapes_are_read_not_dropped() -> None:
    body = {"field_errors": {"a": "plain message", "b": {"value": 3}, "c": None, "d": ["x"], "7": {"message": 5}}}
    problem = parse_problem(json.dumps(body))
    assert problem is not None
    assert problem.field_errors == {
        "a": "plain message",
        "b": "invalid (got 3)",
        "c": "invalid",
        "d": '["x"]',
        "7": "5",
    }


@pytest.mark.parametrize("body", [{"request_id": "r-1"}, {"requestId": "r-1"}, {"context": {"request-id": "r-1"}}])
def test_request_id_is_found_in_any_of_its_places(body: dict[str, object]) -> None:
    problem = parse_problem(json.dumps(body))
    assert problem is not None
    assert problem.request_id == "r-1"


@pytest.mark.parametrize(
    "body",
    [None, "", "<html><body>Bad gateway</body></html>", b"\xff\xfe\x00garbage", "{", "nul", "[1, 2]", "42", '"x"'],
)
def test_non_object_body_is_no_problem(body: str | bytes | None) -> None:
    assert parse_problem(body) is None


def test_mistyped_members_are_ignored_or_stringified() -> None:
    body = {
        "title": 7,
        "status": "404",
        "detail": {"why": "nested"},
        "context": "not an object",
        "field_errors": ["not", "a", "map"],
    }
    problem = parse_problem(json.dumps(body))
    assert problem == ProblemDetails(title="7", status=None, detail='{"why": "nested"}', request_id=None)


def test_boolean_status_is_not_a_status() -> None:
    problem = parse_problem('{"status": true}')
    assert problem is not None
    assert problem.status is None


def test_empty_object_is_an_empty_problem() -> None:
    assert parse_problem("{}") == ProblemDetails()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_parse_problem_never_raises_on_arbitrary_input(body: bytes | str) -> None:
    result = parse_problem(body)
    assert result is None or isinstance(result, ProblemDetails)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
_PROBLEMISH = st.dictionaries(
    st.sampled_from(["title", "status", "detail", "context", "field_errors", "request_id", "requestId", "type"]),
    _JSON
    | st.fixed_dictionaries({"request-id": _JSON})
    | st.dictionaries(st.text(max_size=8), st.fixed_dictionaries({"message": _JSON, "value": _JSON})),
)


@settings(max_examples=200, deadline=None)
@given(_PROBLEMISH)
def test_parse_problem_never_raises_on_problem_shaped_json(body: dict[str, object]) -> None:
    problem = parse_problem(json.dumps(body))
    assert problem is not None
    assert problem.title is None or isinstance(problem.title, str)
    assert problem.request_id is None or isinstance(problem.request_id, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in problem.field_errors.items())
    error = api_error_from_response(400, json.dumps(body))
    assert str(error).startswith("Prisjakt API 400")


# -- api_error_from_response ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, PrisjaktValidationError),
        (409, PrisjaktValidationError),
        (422, PrisjaktValidationError),
        (401, PrisjaktAuthError),
        (403, PrisjaktAuthError),
        (404, PrisjaktNotFoundError),
        (429, PrisjaktRateLimitError),
        (500, PrisjaktServerError),
        (502, PrisjaktServerError),
        (503, PrisjaktServerError),
        (504, PrisjaktServerError),
    ],
)
def test_status_maps_to_its_error_class(status: int, cls: type[PrisjaktAPIError]) -> None:
    assert error_class_for_status(status) is cls
    error = api_error_from_response(status, json.dumps({"title": "t", "status": status}))
    assert type(error) is cls
    assert error.status == status


def test_unexpected_status_is_a_plain_api_error() -> None:
    assert type(api_error_from_response(302, None)) is PrisjaktAPIError


def test_not_found_message_names_title_detail_and_request_id() -> None:
    error = api_error_from_response(404, json.dumps(NOT_FOUND).encode(), reason="Not Found")
    assert str(error) == (
        f"Prisjakt API 404 Pixel not found: A pixel with ID 5f1c could not be found (request-id {REQUEST_ID})"
    )
    assert (error.status, error.title, error.detail, error.request_id) == (
        404,
        "Pixel not found",
        "A pixel with ID 5f1c could not be found",
        REQUEST_ID,
    )


def test_validation_message_lists_field_errors() -> None:
    error = api_error_from_response(400, json.dumps(VALIDATION), method="GET", path="/shops/alfa/pixels")
    assert isinstance(error, PrisjaktValidationError)
    assert error.field_errors == {"shopId": "invalid integer (got 'alfa')", "from": "must be before to"}
    message = str(error)
    assert message.startswith("Prisjakt API 400 Bad Request: Validation failed")
    assert "[from: must be before to; shopId: invalid integer (got 'alfa')]" in message
    assert "(GET /shops/alfa/pixels)" in message
    assert message.endswith(f"(request-id {REQUEST_ID})")


def test_missing_request_id_is_said() -> None:
    assert str(api_error_from_response(404, '{"title": "Gone"}')).endswith("(no request-id)")


@pytest.mark.parametrize(("status", "word"), [(401, "Client Secret"), (403, "role")])
def test_auth_errors_carry_a_hint(status: int, word: str) -> None:
    error = api_error_from_response(status, json.dumps({"title": "Unauthorized"}))
    assert isinstance(error, PrisjaktAuthError)
    assert word.lower() in str(error).lower()


def test_problem_title_wins_over_reason_phrase_and_reason_fills_in() -> None:
    assert api_error_from_response(404, json.dumps(NOT_FOUND), reason="Not Found").title == "Pixel not found"
    assert api_error_from_response(404, json.dumps({"detail": "d"}), reason="Not Found").title == "Not Found"


def test_html_proxy_page_gives_status_reason_and_the_start_of_the_body() -> None:
    body = "<html>\n  <head><title>502 Bad Gateway</title></head>\n  <body>" + "x" * 1000 + "</body></html>"
    error = api_error_from_response(502, body.encode(), reason="Bad Gateway", method="GET", path="/pixels/p/events")
    assert isinstance(error, PrisjaktServerError)
    assert error.title == "Bad Gateway"
    assert error.detail is not None
    assert error.detail.startswith("non-JSON response: <html> <head><title>502 Bad Gateway</title></head> <body>xxx")
    assert len(error.detail) == len("non-JSON response: ") + BODY_EXCERPT_CHARS
    assert str(error).startswith("Prisjakt API 502 Bad Gateway: non-JSON response: <html> <head>")
    assert "(GET /pixels/p/events)" in str(error)


def test_undecodable_body_is_still_excerpted() -> None:
    error = api_error_from_response(500, b"\xff\xfeoops", reason="Internal Server Error")
    assert error.detail is not None
    assert "oops" in error.detail


@pytest.mark.parametrize("body", [None, "", b"", "   \n "])
def test_empty_body_is_said(body: str | bytes | None) -> None:
    error = api_error_from_response(503, body, reason="Service Unavailable")
    assert error.detail == "empty response body"
    assert str(error).startswith("Prisjakt API 503 Service Unavailable: empty response body")


def test_rate_limit_error_hint_names_the_reset() -> None:
    reset_at = datetime(2026, 10, 1, 13, 0, tzinfo=UTC)
    error = PrisjaktRateLimitError(reset_at=reset_at, limit=10_000, remaining=0)
    assert error.status == 429
    assert "2026-10-01T13:00:00+00:00" in str(error)
    assert "deferrable=True" in str(error)
    assert "an unknown time" in str(PrisjaktRateLimitError())


# -- hierarchy and pickling ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls",
    [
        PrisjaktError,
        PrisjaktConfigError,
        PrisjaktPaginationError,
        PrisjaktAPIError,
        PrisjaktAuthError,
        PrisjaktNotFoundError,
        PrisjaktValidationError,
        PrisjaktServerError,
        PrisjaktRateLimitError,
    ],
)
def test_every_error_is_an_airflow_exception(cls: type[Exception]) -> None:
    assert issubclass(cls, PrisjaktError)
    assert issubclass(cls, AirflowException)


def test_config_error_is_also_a_value_error() -> None:
    assert issubclass(PrisjaktConfigError, ValueError)


@pytest.mark.parametrize(
    "error",
    [
        api_error_from_response(404, json.dumps(NOT_FOUND), method="GET", path="/pixels/5f1c"),
        api_error_from_response(400, json.dumps(VALIDATION)),
        api_error_from_response(401, None, reason="Unauthorized"),
        api_error_from_response(502, "<html>proxy</html>", reason="Bad Gateway"),
        PrisjaktRateLimitError(
            reset_at=datetime(2026, 10, 1, 13, 0, tzinfo=UTC), limit=10_000, remaining=0, request_id="r"
        ),
    ],
)
def test_errors_survive_pickling_with_attributes(error: PrisjaktAPIError) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert clone.args == error.args
    assert vars(clone) == vars(error)
    for name in ("status", "title", "detail", "request_id", "field_errors", "method", "path", "hint"):
        assert getattr(clone, name) == getattr(error, name)
    if isinstance(error, PrisjaktRateLimitError):
        assert isinstance(clone, PrisjaktRateLimitError)
        assert (clone.reset_at, clone.limit, clone.remaining) == (error.reset_at, 10_000, 0)


# -- final and retryable errors (issue #12, item 8) --------------------------------------------------

FINAL = [PrisjaktConfigError, PrisjaktAuthError, PrisjaktNotFoundError, PrisjaktValidationError]
RETRYABLE = [PrisjaktError, PrisjaktAPIError, PrisjaktServerError, PrisjaktRateLimitError, PrisjaktPaginationError]


@pytest.mark.parametrize("cls", FINAL)
def test_errors_that_can_never_succeed_fail_the_task_without_retries(cls: type[PrisjaktError]) -> None:
    assert issubclass(cls, AirflowFailException)
    assert issubclass(cls, PrisjaktError)
    assert cls.retryable is False


@pytest.mark.parametrize("cls", RETRYABLE)
def test_transient_errors_stay_retryable(cls: type[PrisjaktError]) -> None:
    assert not issubclass(cls, AirflowFailException)
    assert cls.retryable is True


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (400, True),
        (401, True),
        (403, True),
        (404, True),
        (409, True),
        (422, True),
        (408, False),
        (429, False),
        (500, False),
        (503, False),
    ],
)
def test_a_status_is_final_exactly_when_it_can_never_succeed(status: int, final: bool) -> None:
    error = api_error_from_response(status, None, reason="r")
    assert isinstance(error, AirflowFailException) is final
    assert error.retryable is not final


def test_a_request_timeout_is_a_retryable_server_error() -> None:
    assert error_class_for_status(REQUEST_TIMEOUT_STATUS) is PrisjaktServerError


def test_final_errors_stay_final_through_pickling() -> None:
    clone = pickle.loads(pickle.dumps(api_error_from_response(403, None, reason="Forbidden")))
    assert isinstance(clone, PrisjaktAuthError)
    assert isinstance(clone, AirflowFailException)
    assert clone.retryable is False


def test_a_config_error_is_final_and_still_a_value_error() -> None:
    error = PrisjaktConfigError("window_bounds must be one of half_open, inclusive, dates")
    assert isinstance(error, AirflowFailException)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    "path", ["/click-conversion/pixels/5f1c/events", "/pixels/5f1c", "/click-conversion/pixels/5f1c/purchase-summary"]
)
def test_an_unknown_pixel_names_the_next_step(path: str) -> None:
    error = api_error_from_response(404, json.dumps(NOT_FOUND), method="GET", path=path)
    assert isinstance(error, PrisjaktNotFoundError)
    assert "get_pixels" in str(error)
    assert "pixel_id" in str(error)


def test_an_unknown_shop_names_the_shop_id() -> None:
    error = api_error_from_response(404, None, reason="Not Found", path="/click-conversion/shops/121213/pixels")
    assert "shop_id" in str(error)


def test_other_404s_carry_no_pixel_hint() -> None:
    assert "get_pixels" not in str(api_error_from_response(404, None, reason="Not Found", path="/events/e-1"))
    assert api_error_from_response(404, None, reason="Not Found").hint is None
