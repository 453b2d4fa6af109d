"""
Errors raised by the Prisjakt provider, and the RFC 7807 problem details they carry as data.

The API answers errors with an RFC 7807-style body (``title``, ``status``, ``detail``,
``context["request-id"]`` and, on validation errors, ``field_errors``). :func:`parse_problem` reads
such a body, and :func:`api_error_from_response` turns a status and a body into the matching
:class:`PrisjaktAPIError` subclass. Status, title, detail and request id are attributes, never only
text inside the message.

Errors that can never succeed however often they are tried (a configuration error, 400, 401, 403,
404) subclass ``AirflowFailException``, so the task fails at once instead of waiting out its
retries; 5xx, 408, 429 and transport errors stay retryable. :attr:`PrisjaktError.retryable` says
which, as data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_prisjakt.api.decoding import decode_json

BODY_EXCERPT_CHARS = 200
#: The one 4xx that may succeed when tried again: the server gave up waiting for the request.
REQUEST_TIMEOUT_STATUS = 408


class PrisjaktError(AirflowException):
    """
    Base class of every error this provider raises.

    :cvar retryable: whether Airflow's task retries may help; ``False`` exactly for the subclasses
        that are also ``AirflowFailException`` (the task fails without retries).
    """

    retryable: ClassVar[bool] = True


class PrisjaktConfigError(PrisjaktError, AirflowFailException, ValueError):
    """A connection setting or operator argument is invalid; raised before any request is sent. Final."""

    retryable = False


class PrisjaktPaginationError(PrisjaktError):
    """The API's pagination cannot be followed safely (foreign, repeated or malformed next link)."""


@dataclass(frozen=True)
class ProblemDetails:
    """
    The members of an RFC 7807 problem body that the Prisjakt API sends.

    :param title: short summary, e.g. ``Pixel not found``.
    :param status: the HTTP status repeated in the body, when present.
    :param detail: human-readable explanation.
    :param request_id: ``context["request-id"]``, to quote to Prisjakt support.
    :param field_errors: per-field validation messages, ``{field: message}``.
    """

    title: str | None = None
    status: int | None = None
    detail: str | None = None
    request_id: str | None = None
    field_errors: dict[str, str] = field(default_factory=dict)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _field_errors(raw: Any) -> dict[str, str]:
    """Flatten ``{"shopId": {"message": "invalid integer", "value": "alfa"}}`` to ``{"shopId": "invalid integer (got 'alfa')"}``."""
    if not isinstance(raw, Mapping):
        return {}
    errors: dict[str, str] = {}
    for name, info in raw.items():
        if isinstance(info, Mapping):
            message = _text(info.get("message")) or "invalid"
            if "value" in info:
                message = f"{message} (got {info['value']!r})"
        else:
            message = _text(info) or "invalid"
        errors[str(name)] = message
    return errors


def parse_problem(body: str | bytes | None) -> ProblemDetails | None:
    """
    Read an RFC 7807 problem body; return ``None`` if the body is not a JSON object.

    Pure: no I/O. Unknown or mistyped members are ignored rather than raising.
    """
    if body is None:
        return None
    try:
        data = decode_json(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    context = data.get("context")
    request_id = context.get("request-id") if isinstance(context, Mapping) else None
    request_id = request_id or data.get("request_id") or data.get("requestId")
    status = data.get("status")
    return ProblemDetails(
        title=_text(data.get("title")),
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        detail=_text(data.get("detail")),
        request_id=_text(request_id),
        field_errors=_field_errors(data.get("field_errors")),
    )


class PrisjaktAPIError(PrisjaktError):
    """
    The API answered with an error status.

    :param status: the HTTP status code.
    :param title: the problem's title, or the HTTP reason phrase.
    :param detail: the problem's detail, or the start of a non-JSON body.
    :param request_id: the API's request id, for support.
    :param field_errors: per-field validation messages.
    :param method: the HTTP method of the failed request.
    :param path: the path of the failed request (never the query or credentials).
    """

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        field_errors: Mapping[str, str] | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.field_errors = dict(field_errors or {})
        self.method = method
        self.path = path
        self.hint = hint
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"Prisjakt API {self.status}"
        if self.title:
            text += f" {self.title}"
        if self.detail:
            text += f": {self.detail}"
        if self.field_errors:
            fields = "; ".join(f"{name}: {message}" for name, message in sorted(self.field_errors.items()))
            text += f" [{fields}]"
        if self.method and self.path:
            text += f" ({self.method} {self.path})"
        text += f" (request-id {self.request_id})" if self.request_id else " (no request-id)"
        if self.hint:
            text += f". {self.hint}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep attributes through pickling (Airflow ships exceptions across processes).
        return (_rebuild_error, (type(self), self.__dict__.copy()))


def _rebuild_error(cls: type[PrisjaktAPIError], state: dict[str, Any]) -> PrisjaktAPIError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._message())
    return error


class PrisjaktAuthError(PrisjaktAPIError, AirflowFailException):
    """401 or 403: wrong credentials or a missing role. Final: never retried."""

    retryable = False


class PrisjaktNotFoundError(PrisjaktAPIError, AirflowFailException):
    """404: the pixel, shop, event or click does not exist for this client. Final: never retried."""

    retryable = False


class PrisjaktValidationError(PrisjaktAPIError, AirflowFailException):
    """400 (or another 4xx, such as 409 or 422): the API refused the request's parameters; see ``field_errors``. Final."""

    retryable = False


class PrisjaktServerError(PrisjaktAPIError):
    """5xx, 408 or an unreadable response, after the retries ran out. Retryable."""


class PrisjaktRateLimitError(PrisjaktAPIError):
    """
    The request budget is spent and the reset is further away than the hook may wait inline.

    :param reset_at: when the budget returns (UTC), if known.
    :param limit: requests allowed per window, if known.
    :param remaining: requests left, if known.
    """

    def __init__(
        self,
        status: int = 429,
        title: str | None = "Too Many Requests",
        detail: str | None = None,
        request_id: str | None = None,
        field_errors: Mapping[str, str] | None = None,
        *,
        reset_at: datetime | None = None,
        limit: int | None = None,
        remaining: int | None = None,
        method: str | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.reset_at = reset_at
        self.limit = limit
        self.remaining = remaining
        if hint is None:
            when = reset_at.isoformat() if reset_at else "an unknown time"
            hint = (
                f"The rate limit resets at {when}; retry after that, or use deferrable=True so the "
                "task frees its worker while it waits"
            )
        super().__init__(status, title, detail, request_id, field_errors, method=method, path=path, hint=hint)


def error_class_for_status(status: int) -> type[PrisjaktAPIError]:
    """Return the :class:`PrisjaktAPIError` subclass for an HTTP status."""
    if status in (401, 403):
        return PrisjaktAuthError
    if status == 404:
        return PrisjaktNotFoundError
    if status == 429:
        return PrisjaktRateLimitError
    if status >= 500 or status == REQUEST_TIMEOUT_STATUS:
        return PrisjaktServerError
    if 400 <= status < 500:
        return PrisjaktValidationError
    return PrisjaktAPIError


_STATUS_HINTS = {
    401: "Check the client id (login) and client secret (password) of the Prisjakt connection",
    403: "The client id lacks the role this call needs (reads need shop_user); ask Prisjakt to grant it",
}
# What to check when a 404 names a path below one of these collections.
_NOT_FOUND_HINTS = {
    "pixels": "Check pixel_id: PrisjaktHook.get_pixels(shop_id) lists the pixels of a shop this client id can read",
    "shops": "Check shop_id: it is the shop's numeric id, and the client id must belong to that shop",
}


def _hint_for(status: int, path: str | None) -> str | None:
    """Return what to check for an error status, from the status and, for a 404, the path."""
    if status == 404 and path:
        segments = path.strip("/").split("/")
        # The first collection followed by an id names what was not found (/pixels/<id>/events: the pixel).
        for collection, identifier in zip(segments, segments[1:], strict=False):
            if collection in _NOT_FOUND_HINTS and identifier:
                return _NOT_FOUND_HINTS[collection]
    return _STATUS_HINTS.get(status)


def api_error_from_response(
    status: int,
    body: str | bytes | None,
    *,
    reason: str | None = None,
    method: str | None = None,
    path: str | None = None,
) -> PrisjaktAPIError:
    """
    Build the error for a failed response from its status and body.

    A problem body gives title, detail, request id and field errors. Any other body (an HTML page
    from a proxy, say) gives the status, the reason phrase and the start of the body, whitespace
    collapsed.
    """
    problem = parse_problem(body)
    cls = error_class_for_status(status)
    if problem is None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
        excerpt = " ".join(text.split())[:BODY_EXCERPT_CHARS]
        detail = f"non-JSON response: {excerpt}" if excerpt else "empty response body"
        problem = ProblemDetails(title=reason, detail=detail)
    return cls(
        status,
        problem.title or reason,
        problem.detail,
        problem.request_id,
        problem.field_errors,
        method=method,
        path=path,
        hint=_hint_for(status, path),
    )
