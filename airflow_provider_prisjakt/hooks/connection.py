"""
The ``prisjakt`` connection: its form fields and how a stored connection becomes settings.

No HTTP client, and no Airflow import at module level: Airflow imports ``get_provider_info``, and
with it this module, while it starts. ``get_provider_info`` (``conn-fields``) and the hook's legacy
form widgets are both generated from :data:`CONNECTION_EXTRA_FIELDS`, so the two declarations of
the form cannot drift apart.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_prisjakt.api.ratelimit import RESET_HEADER_STYLES
from airflow_provider_prisjakt.api.windows import WINDOW_BOUNDS

CONN_TYPE = "prisjakt"
DEFAULT_CONN_ID = "prisjakt_default"
DEFAULT_BASE_URL = "https://api.pj.nu/click-conversion"
DEFAULT_TOKEN_URL = "https://auth.pj.nu/oauth2/token"
AUTH_TYPES = ("headers", "oauth2")
#: Schemes a host without one may get.
PROTOCOLS = ("https", "http")
#: URL schemes of a ``budget_backend`` (Redis and Valkey, as ``limits`` names them).
BUDGET_BACKEND_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "valkey", "valkeys", "valkey+unix")
MASKED_VALUE = "***"


@dataclass(frozen=True)
class ExtraField:
    """
    One field of the connection form stored in the connection's extra.

    :param name: the key in the extra JSON.
    :param label: the label the form shows.
    :param kind: ``string``, ``integer`` or ``number``.
    :param default: the value used when the field is empty.
    :param description: help text under the field.
    :param choices: allowed values, for string fields with a fixed set.
    :param prefill: whether the form pre-fills the default. Airflow's UI masks the value of any
        extra whose name contains "token" and would save the mask, so ``token_url`` is not pre-filled.
    :param secret: whether the value is masked wherever it is shown (a password field in the form).
    """

    name: str
    label: str
    kind: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    prefill: bool = True
    secret: bool = False


CONNECTION_EXTRA_FIELDS: tuple[ExtraField, ...] = (
    ExtraField("timeout", "Timeout (seconds)", "number", 30.0, "Connect and read timeout of each request."),
    ExtraField(
        "max_retries",
        "Max retries",
        "integer",
        5,
        "Retries of a request on 5xx, resets, timeouts and truncated bodies.",
    ),
    ExtraField(
        "page_size", "Page size", "integer", None, "Records per page to ask for; empty leaves the API's default."
    ),
    ExtraField(
        "page_size_param",
        "Page size parameter",
        "string",
        "limit",
        "Query parameter that carries the page size on the first page.",
    ),
    ExtraField(
        "max_inline_wait",
        "Max inline wait (seconds)",
        "number",
        60.0,
        "Longest rate-limit wait a task sleeps through; longer waits defer or fail.",
    ),
    ExtraField(
        "rate_limit_reserve",
        "Rate-limit reserve",
        "integer",
        0,
        "Requests per window left unused for other users of the same client id.",
    ),
    ExtraField(
        "reset_header",
        "X-RateLimit-Reset style",
        "string",
        "auto",
        "How to read X-RateLimit-Reset: auto, duration (ms left), epoch (ms) or epoch_seconds.",
        RESET_HEADER_STYLES,
    ),
    ExtraField(
        "window_bounds",
        "Window bounds",
        "string",
        "half_open",
        "How the server reads from/to: half_open (from included, to excluded), inclusive (both "
        "included) or dates (whole days).",
        WINDOW_BOUNDS,
    ),
    ExtraField(
        "budget_backend",
        "Shared budget backend",
        "string",
        None,
        "URL of a Redis or Valkey store that every task of this client id counts its requests in "
        "(e.g. redis://host:6379/0; needs the [redis] extra); empty: each task infers the others.",
        secret=True,
    ),
    ExtraField(
        "auth_type",
        "Auth type",
        "string",
        "headers",
        "headers (client-id/client-secret headers) or oauth2 (client-credentials bearer token).",
        AUTH_TYPES,
    ),
    ExtraField(
        "token_url", "OAuth2 token URL", "string", DEFAULT_TOKEN_URL, "Token endpoint used when auth type is oauth2."
    ),
    ExtraField(
        "protocol",
        "Protocol",
        "string",
        None,
        "Scheme of a host given without one: https (the default) or http (loopback addresses only).",
        PROTOCOLS,
    ),
)

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "port"],
    "relabeling": {"login": "Client ID", "password": "Client Secret", "host": "API base URL"},
    "placeholders": {
        "login": "lb4xiAVZZWkXiYxfxa146e4tbkYa702P",
        "password": "client secret from Prisjakt",
        "host": DEFAULT_BASE_URL,
        **{extra.name: str(extra.default) for extra in CONNECTION_EXTRA_FIELDS if extra.default is not None},
    },
}


def conn_fields() -> dict[str, dict[str, Any]]:
    """Return the ``conn-fields`` declaration (Airflow >= 3.2) of the extra fields."""
    declared: dict[str, dict[str, Any]] = {}
    for extra in CONNECTION_EXTRA_FIELDS:
        schema: dict[str, Any] = {"type": [extra.kind, "null"]}
        if extra.default is not None and extra.prefill:
            schema["default"] = extra.default
        if extra.choices:
            schema["enum"] = [*extra.choices, None]
        if extra.secret:
            schema["format"] = "password"  # Airflow's UI masks a field of this format
        declared[extra.name] = {"label": extra.label, "description": extra.description, "schema": schema}
    return declared


def legacy_form_widgets() -> dict[str, Any]:
    """Return the extra fields as wtforms fields, for the connection form of Airflow before 3.2."""
    from flask_babel import lazy_gettext
    from wtforms import IntegerField, PasswordField, StringField
    from wtforms.validators import NumberRange, Optional

    try:
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    except ImportError:  # pragma: no cover - Airflow 3 without FAB
        BS3PasswordFieldWidget = BS3TextFieldWidget = None  # noqa: N806

    widgets: dict[str, Any] = {}
    for extra in CONNECTION_EXTRA_FIELDS:
        kwargs: dict[str, Any] = {
            "description": extra.description,
            "default": extra.default if extra.prefill else None,
        }
        widget_class = BS3PasswordFieldWidget if extra.secret else BS3TextFieldWidget
        if widget_class is not None:
            kwargs["widget"] = widget_class()
        label = lazy_gettext(extra.label)
        if extra.kind == "integer":
            widgets[extra.name] = IntegerField(label, validators=[Optional(), NumberRange(min=0)], **kwargs)
        elif extra.secret:
            widgets[extra.name] = PasswordField(label, validators=[Optional()], **kwargs)
        else:
            widgets[extra.name] = StringField(label, validators=[Optional()], **kwargs)
    return widgets


def ui_field_behaviour() -> dict[str, Any]:
    """Return a copy of :data:`UI_FIELD_BEHAVIOUR` that the caller may change."""
    return copy.deepcopy(UI_FIELD_BEHAVIOUR)


def ui_field_behaviour_for_provider_info() -> dict[str, Any]:
    """Return :data:`UI_FIELD_BEHAVIOUR` with the kebab-case keys ``get_provider_info`` uses."""
    return {key.replace("_", "-"): value for key, value in UI_FIELD_BEHAVIOUR.items()}


def is_loopback(host: str | None) -> bool:
    """Tell whether a host name or address is the local machine (credentials may go there over http)."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_base_url(
    host: str | None, schema: str | None = None, port: int | None = None, protocol: str | None = None
) -> str:
    """
    Build the API base URL from the connection's host, schema (path) and port.

    The host may be a full URL (``https://api.pj.nu/click-conversion``) or a bare host name, which
    gets ``protocol`` (default https). A URI-style connection
    (``prisjakt://id:secret@api.pj.nu:443/click-conversion``) arrives as host + port + schema, and
    the schema becomes the path.
    """
    if not host:
        return DEFAULT_BASE_URL
    text = host.strip()
    if "://" not in text:
        text = f"{(protocol or 'https').lower()}://{text}"
    parts = urlsplit(text)
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    if schema:
        path = f"{path}/{schema.strip('/')}"
    return urlunsplit((parts.scheme.lower(), netloc, path, "", "")).rstrip("/")


def extra_value(extra: Mapping[str, Any], name: str) -> Any:
    """Read an extra by its plain name or the ``extra__prisjakt__`` prefixed name older UIs stored."""
    value = extra.get(name)
    if value in (None, "", MASKED_VALUE):
        value = extra.get(f"extra__{CONN_TYPE}__{name}")
    # A form saved with a masked pre-filled value stores the mask itself: treat it as empty.
    return None if value in ("", MASKED_VALUE) else value


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything the hook needs from a ``prisjakt`` connection, validated; secrets stay out of its repr."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    timeout: float
    max_retries: int
    page_size: int | None
    page_size_param: str
    max_inline_wait: float
    rate_limit_reserve: int
    reset_header: str
    window_bounds: str
    budget_backend: str | None = field(repr=False)
    auth_type: str
    token_url: str
    protocol: str | None


class ConnectionSettingsError(ValueError):
    """A connection field holds a value the provider cannot use."""


def _coerce(extra: ExtraField, value: Any) -> Any:
    if value is None:
        return extra.default
    try:
        if extra.kind == "integer":
            number = int(value)
            if number < 0:
                raise ValueError
            return number
        if extra.kind == "number":
            real = float(value)
            if not math.isfinite(real) or real < 0:
                raise ValueError
            return real
    except (TypeError, ValueError, OverflowError):
        shown = MASKED_VALUE if extra.secret else repr(value)
        raise ConnectionSettingsError(
            f"Connection extra {extra.name!r} must be a non-negative {extra.kind}, got {shown}"
        ) from None
    text = str(value).strip()
    if extra.choices and text.lower() not in extra.choices:
        raise ConnectionSettingsError(
            f"Connection extra {extra.name!r} must be one of {', '.join(extra.choices)}, got {text!r}"
        )
    return text.lower() if extra.choices else text


def check_url_may_carry_credentials(url: str, what: str) -> None:
    """Refuse a URL that would send credentials in clear text to another machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectionSettingsError(f"The {what} {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConnectionSettingsError(
            f"The {what} uses http:// on {parts.hostname}, which would send the client secret in clear "
            "text; use https:// (plain http is allowed only for loopback addresses such as the sandbox)"
        )


def check_budget_backend(url: str) -> None:
    """Refuse a ``budget_backend`` URL of a kind the shared budget cannot use, without quoting it (it may hold a password)."""
    if urlsplit(url).scheme.lower() not in BUDGET_BACKEND_SCHEMES:
        raise ConnectionSettingsError(
            "Connection extra 'budget_backend' must be a URL of a Redis or Valkey store, starting with one of "
            + ", ".join(f"{scheme}://" for scheme in BUDGET_BACKEND_SCHEMES)
        )


def settings_from_connection(
    *,
    host: str | None,
    schema: str | None,
    port: int | None,
    login: str | None,
    password: str | None,
    extra: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> ConnectionSettings:
    """
    Validate a stored connection and return its settings.

    :param overrides: values given to the hook's constructor; they win over the connection's extra.
    :raises ConnectionSettingsError: on a missing credential or an unusable value.
    """
    if not login:
        raise ConnectionSettingsError("The Prisjakt connection has no Client ID (login)")
    if not password:
        raise ConnectionSettingsError("The Prisjakt connection has no Client Secret (password)")
    values: dict[str, Any] = {}
    for extra_field in CONNECTION_EXTRA_FIELDS:
        raw = (overrides or {}).get(extra_field.name)
        values[extra_field.name] = _coerce(
            extra_field, raw if raw is not None else extra_value(extra, extra_field.name)
        )
    if values["max_retries"] < 1:
        values["max_retries"] = 1
    try:
        base_url = build_base_url(host, schema, port, values["protocol"])
    except ValueError as err:
        raise ConnectionSettingsError(f"The API base URL (host {host!r}, port {port!r}) is not usable: {err}") from None
    check_url_may_carry_credentials(base_url, "API base URL")
    if values["budget_backend"]:
        check_budget_backend(values["budget_backend"])
    if values["auth_type"] == "oauth2":
        check_url_may_carry_credentials(values["token_url"], "OAuth2 token URL")
    return ConnectionSettings(base_url=base_url, client_id=login, client_secret=password, **values)


def connection_settings(conn: Any, conn_id: str, overrides: Mapping[str, Any] | None = None) -> ConnectionSettings:
    """
    Validate an Airflow connection object and return its settings; masks the secrets in logs.

    :raises PrisjaktConfigError: naming the connection and the field at fault.
    """
    from airflow.providers.common.compat.sdk import mask_secret

    from airflow_provider_prisjakt.exceptions import PrisjaktConfigError

    try:
        settings = settings_from_connection(
            host=conn.host,
            schema=conn.schema,
            port=conn.port,
            login=conn.login,
            password=conn.password,
            extra=conn.extra_dejson,
            overrides=overrides,
        )
    except ConnectionSettingsError as err:
        raise PrisjaktConfigError(f"Connection {conn_id!r}: {err}") from None
    mask_secret(settings.client_secret)
    if settings.budget_backend:
        mask_secret(settings.budget_backend)
        with contextlib.suppress(ValueError):  # a client library may print the password alone
            if password := urlsplit(settings.budget_backend).password:
                mask_secret(password)
    return settings
