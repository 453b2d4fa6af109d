"""The ``prisjakt`` connection: base URL, loopback rule, settings validation and form fields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_prisjakt.api.ratelimit import RESET_HEADER_STYLES as RATELIMIT_RESET_HEADER_STYLES
from airflow_provider_prisjakt.hooks.connection import (
    AUTH_TYPES,
    CONNECTION_EXTRA_FIELDS,
    DEFAULT_BASE_URL,
    DEFAULT_TOKEN_URL,
    RESET_HEADER_STYLES,
    UI_FIELD_BEHAVIOUR,
    ConnectionSettings,
    ConnectionSettingsError,
    build_base_url,
    conn_fields,
    connection_settings,
    extra_value,
    is_loopback,
    settings_from_connection,
    ui_field_behaviour_for_provider_info,
)
from tests.conftest import register_secret

SECRET = register_secret("s3cr3t-unit-test-client-secret")
EXTRA_NAMES = [
    "timeout",
    "max_retries",
    "page_size",
    "page_size_param",
    "max_inline_wait",
    "rate_limit_reserve",
    "reset_header",
    "window_bounds",
    "budget_backend",
    "auth_type",
    "token_url",
    "protocol",
]


def _settings(
    host: str | None = "https://api.pj.nu/click-conversion",
    extra: dict[str, Any] | None = None,
    *,
    schema: str | None = None,
    port: int | None = None,
    login: str | None = "client-id",
    password: str | None = SECRET,
    overrides: dict[str, Any] | None = None,
) -> ConnectionSettings:
    return settings_from_connection(
        host=host,
        schema=schema,
        port=port,
        login=login,
        password=password,
        extra=extra or {},
        overrides=overrides,
    )


# -- build_base_url ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [None, ""])
def test_empty_host_gives_the_default_base_url(host: str | None) -> None:
    assert build_base_url(host) == DEFAULT_BASE_URL == "https://api.pj.nu/click-conversion"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.pj.nu", "https://api.pj.nu"),
        ("api.pj.nu/click-conversion", "https://api.pj.nu/click-conversion"),
        ("  api.pj.nu/click-conversion/  ", "https://api.pj.nu/click-conversion"),
        ("api.pj.nu:8443", "https://api.pj.nu:8443"),
    ],
)
def test_bare_host_gets_https(host: str, expected: str) -> None:
    assert build_base_url(host) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("https://api.pj.nu/click-conversion", "https://api.pj.nu/click-conversion"),
        ("https://api.pj.nu/click-conversion/", "https://api.pj.nu/click-conversion"),
        ("HTTPS://api.pj.nu/click-conversion", "https://api.pj.nu/click-conversion"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://api.pj.nu/click-conversion?x=1#frag", "https://api.pj.nu/click-conversion"),
    ],
)
def test_host_with_a_scheme_is_kept(host: str, expected: str) -> None:
    assert build_base_url(host) == expected


def test_uri_style_connection_gives_host_port_and_schema_as_path() -> None:
    # prisjakt://id:secret@api.pj.nu:443/click-conversion arrives as host + port + schema.
    assert build_base_url("api.pj.nu", "click-conversion", 443) == "https://api.pj.nu:443/click-conversion"
    assert build_base_url("api.pj.nu", "/click-conversion/", None) == "https://api.pj.nu/click-conversion"
    assert build_base_url("https://api.pj.nu/v1", "click-conversion") == "https://api.pj.nu/v1/click-conversion"


def test_port_in_the_host_wins_over_the_port_field() -> None:
    assert build_base_url("https://api.pj.nu:8443/x", port=443) == "https://api.pj.nu:8443/x"


@pytest.mark.parametrize(
    ("protocol", "expected"), [("http", "http://127.0.0.1:8080"), ("HTTPS", "https://127.0.0.1:8080")]
)
def test_protocol_extra_sets_the_scheme_of_a_bare_host(protocol: str, expected: str) -> None:
    assert build_base_url("127.0.0.1", port=8080, protocol=protocol) == expected


def test_protocol_extra_does_not_override_an_explicit_scheme() -> None:
    assert build_base_url("https://api.pj.nu", protocol="http") == "https://api.pj.nu"


# -- is_loopback ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "localhost.localdomain", "sandbox.localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]"],
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [None, "", "api.pj.nu", "10.0.0.1", "0.0.0.0", "127.0.0.1.nip.io", "localhost.evil.example", "notlocalhost", "::2"],
)
def test_non_loopback_hosts(host: str | None) -> None:
    assert not is_loopback(host)


# -- settings_from_connection --------------------------------------------------------------------


def test_defaults_when_extra_is_empty() -> None:
    assert _settings() == ConnectionSettings(
        base_url="https://api.pj.nu/click-conversion",
        client_id="client-id",
        client_secret=SECRET,
        timeout=30.0,
        max_retries=5,
        page_size=None,
        page_size_param="limit",
        max_inline_wait=60.0,
        rate_limit_reserve=0,
        reset_header="auto",
        window_bounds="half_open",
        budget_backend=None,
        auth_type="headers",
        token_url=DEFAULT_TOKEN_URL,
        protocol=None,
    )


def test_empty_host_uses_the_default_base_url() -> None:
    assert _settings(host="").base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize(
    ("login", "password", "what"),
    [
        (None, SECRET, "Client ID"),
        ("", SECRET, "Client ID"),
        ("id", None, "Client Secret"),
        ("id", "", "Client Secret"),
    ],
)
def test_missing_credentials_are_refused(login: str | None, password: str | None, what: str) -> None:
    with pytest.raises(ConnectionSettingsError, match=what):
        _settings(login=login, password=password)


def test_extras_are_coerced_from_strings() -> None:
    result = _settings(
        extra={
            "timeout": "12.5",
            "max_retries": "3",
            "page_size": "500",
            "page_size_param": " per_page ",
            "max_inline_wait": 90,
            "rate_limit_reserve": "100",
            "reset_header": "EPOCH",
            "auth_type": " OAuth2 ",
            "token_url": "https://auth.pj.nu/oauth2/token",
        }
    )
    assert (result.timeout, result.max_retries, result.page_size) == (12.5, 3, 500)
    assert isinstance(result.timeout, float)
    assert isinstance(result.max_inline_wait, float)
    assert result.max_inline_wait == 90.0
    assert (result.page_size_param, result.rate_limit_reserve) == ("per_page", 100)
    assert (result.reset_header, result.auth_type) == ("epoch", "oauth2")


def test_empty_string_extras_fall_back_to_defaults() -> None:
    result = _settings(extra=dict.fromkeys(EXTRA_NAMES, ""))
    assert result == _settings()


def test_zero_max_retries_means_one_attempt() -> None:
    assert _settings(extra={"max_retries": 0}).max_retries == 1


def test_prefixed_extra_keys_are_accepted() -> None:
    result = _settings(
        extra={"extra__prisjakt__timeout": "7", "extra__prisjakt__reset_header": "duration", "page_size": "50"}
    )
    assert (result.timeout, result.reset_header, result.page_size) == (7.0, "duration", 50)


def test_plain_key_wins_over_prefixed_key() -> None:
    assert _settings(extra={"timeout": "5", "extra__prisjakt__timeout": "7"}).timeout == 5.0
    assert extra_value({"timeout": "", "extra__prisjakt__timeout": "7"}, "timeout") == "7"
    assert extra_value({"extra__prisjakt__timeout": ""}, "timeout") is None


def test_overrides_win_over_extras() -> None:
    result = _settings(
        extra={"timeout": "30", "max_retries": "9", "page_size": "10"},
        overrides={"timeout": 2, "max_retries": None, "page_size": 1000},
    )
    assert (result.timeout, result.max_retries, result.page_size) == (2.0, 9, 1000)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", "soon"),
        ("timeout", "-1"),
        ("max_retries", "three"),
        ("max_retries", "-2"),
        ("max_retries", "2.5"),
        ("max_retries", float("inf")),
        ("timeout", "nan"),
        ("timeout", "inf"),
        ("max_inline_wait", float("inf")),
        ("page_size", [10]),
        ("max_inline_wait", "forever"),
        ("rate_limit_reserve", "-1"),
    ],
)
def test_bad_numbers_are_refused_naming_the_field(name: str, value: Any) -> None:
    with pytest.raises(ConnectionSettingsError, match=f"'{name}' must be a non-negative"):
        _settings(extra={name: value})


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [("reset_header", "sometimes", "auto, duration, epoch, epoch_seconds"), ("auth_type", "basic", "headers, oauth2")],
)
def test_bad_enum_values_are_refused_naming_the_field(name: str, value: str, allowed: str) -> None:
    with pytest.raises(ConnectionSettingsError, match=f"'{name}' must be one of {allowed}, got '{value}'"):
        _settings(extra={name: value})


def test_bad_override_is_refused_too() -> None:
    with pytest.raises(ConnectionSettingsError, match="'timeout'"):
        _settings(overrides={"timeout": "x"})


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        ("http://api.pj.nu/click-conversion", {}),
        ("api.pj.nu", {"protocol": "http"}),
        ("api.pj.nu", {"extra__prisjakt__protocol": "http"}),
        ("http://10.0.0.5:8080", {}),
        ("http://127.0.0.1.nip.io", {}),
    ],
)
def test_http_to_a_non_loopback_host_is_refused(host: str, extra: dict[str, str]) -> None:
    with pytest.raises(ConnectionSettingsError, match="clear text"):
        _settings(host=host, extra=extra)


@pytest.mark.parametrize(
    ("host", "port", "extra", "expected"),
    [
        ("http://127.0.0.1:8080", None, {}, "http://127.0.0.1:8080"),
        ("127.0.0.1", 8080, {"protocol": "http"}, "http://127.0.0.1:8080"),
        ("http://localhost:9000/click-conversion", None, {}, "http://localhost:9000/click-conversion"),
        ("http://[::1]:9000", None, {}, "http://[::1]:9000"),
    ],
)
def test_http_to_loopback_is_allowed(host: str, port: int | None, extra: dict[str, str], expected: str) -> None:
    assert _settings(host=host, port=port, extra=extra).base_url == expected


@pytest.mark.parametrize("host", ["ftp://api.pj.nu", "https://"])
def test_non_http_base_url_is_refused(host: str) -> None:
    with pytest.raises(ConnectionSettingsError, match="not an http"):
        _settings(host=host)


def test_http_token_url_is_refused_for_oauth2_only() -> None:
    with pytest.raises(ConnectionSettingsError, match="OAuth2 token URL"):
        _settings(extra={"auth_type": "oauth2", "token_url": "http://auth.pj.nu/oauth2/token"})
    assert _settings(extra={"token_url": "http://auth.pj.nu/oauth2/token"}).auth_type == "headers"


def test_secret_never_appears_in_settings_errors() -> None:
    with pytest.raises(ConnectionSettingsError) as info:
        _settings(host="http://api.pj.nu")
    assert SECRET not in str(info.value)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(EXTRA_NAMES + [f"extra__prisjakt__{name}" for name in EXTRA_NAMES] + ["protocol"]),
        st.none() | st.text(max_size=12) | st.integers(-5, 10**6) | st.floats(allow_nan=False),
        max_size=6,
    )
)
def test_arbitrary_extras_give_settings_or_a_settings_error(extra: dict[str, Any]) -> None:
    try:
        result = _settings(extra=extra)
    except ConnectionSettingsError:
        return
    assert result.reset_header in RESET_HEADER_STYLES
    assert result.auth_type in AUTH_TYPES
    assert result.max_retries >= 1
    assert result.timeout >= 0 and result.rate_limit_reserve >= 0


# -- form declarations ---------------------------------------------------------------------------


def test_extra_fields_are_the_documented_ones() -> None:
    assert [field.name for field in CONNECTION_EXTRA_FIELDS] == EXTRA_NAMES


def test_connection_reset_styles_match_the_rate_limit_parser() -> None:
    assert RESET_HEADER_STYLES == RATELIMIT_RESET_HEADER_STYLES


def test_conn_fields_declare_every_extra_with_label_type_and_default() -> None:
    declared = conn_fields()
    assert list(declared) == EXTRA_NAMES
    for field in CONNECTION_EXTRA_FIELDS:
        entry = declared[field.name]
        assert entry["label"] == field.label
        assert entry["description"] == field.description
        assert entry["schema"]["type"] == [field.kind, "null"]
        assert entry["schema"].get("default") == field.default
    assert declared["max_retries"]["schema"] == {"type": ["integer", "null"], "default": 5}
    assert declared["page_size"]["schema"] == {"type": ["integer", "null"]}
    assert declared["timeout"]["schema"]["type"] == ["number", "null"]
    assert declared["reset_header"]["schema"]["enum"] == ["auto", "duration", "epoch", "epoch_seconds", None]
    assert declared["auth_type"]["schema"]["enum"] == ["headers", "oauth2", None]


def test_conn_field_defaults_are_what_settings_use() -> None:
    defaults = _settings(host=None)
    for name, entry in conn_fields().items():
        assert getattr(defaults, name) == entry["schema"].get("default")


def test_ui_field_behaviour_hides_unused_fields_and_relabels_credentials() -> None:
    assert UI_FIELD_BEHAVIOUR["hidden_fields"] == ["schema", "port"]
    assert UI_FIELD_BEHAVIOUR["relabeling"] == {
        "login": "Client ID",
        "password": "Client Secret",
        "host": "API base URL",
    }
    placeholders = UI_FIELD_BEHAVIOUR["placeholders"]
    assert placeholders["host"] == DEFAULT_BASE_URL
    assert placeholders["timeout"] == "30.0"
    assert placeholders["reset_header"] == "auto"
    assert "page_size" not in placeholders  # no default to show
    assert SECRET not in str(UI_FIELD_BEHAVIOUR)


def test_provider_info_ui_field_behaviour_uses_kebab_case_keys() -> None:
    kebab = ui_field_behaviour_for_provider_info()
    assert set(kebab) == {"hidden-fields", "relabeling", "placeholders"}
    assert kebab["hidden-fields"] == UI_FIELD_BEHAVIOUR["hidden_fields"]
    assert kebab["placeholders"] == UI_FIELD_BEHAVIOUR["placeholders"]


# -- secrets ---------------------------------------------------------------------------------------


class _StoredConnection:
    """Shaped like an Airflow connection: what ``connection_settings`` reads."""

    def __init__(self, extra: dict[str, Any], password: str = SECRET) -> None:
        self.host, self.schema, self.port, self.login = "https://api.pj.nu/click-conversion", None, None, "id"
        self.password = password
        self.extra_dejson = extra


def test_the_secret_and_the_budget_backend_url_are_masked_and_kept_out_of_repr() -> None:
    from airflow.providers.common.compat.sdk import redact

    backend = register_secret("redis://:backend-pw-unit@redis.example:6379/0")

    settings = connection_settings(_StoredConnection({"budget_backend": backend}), "prisjakt_default")

    assert settings.budget_backend == backend
    assert backend not in str(redact(f"backend {backend}")) and SECRET not in str(redact(f"secret {SECRET}"))
    assert backend not in repr(settings) and SECRET not in repr(settings)


def test_the_budget_backend_s_password_alone_is_masked_too() -> None:
    from airflow.providers.common.compat.sdk import redact

    password = register_secret("backend-pw-alone")
    connection_settings(_StoredConnection({"budget_backend": f"redis://:{password}@redis.example:6379/0"}), "p")

    assert password not in str(redact(f"AUTH {password} failed"))  # as a client library might say it


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis.example:6379/0",
        "rediss://:pw@redis.example:6380",
        "valkey://valkey:6379",
        "redis+sentinel://s:26379/mymaster",
    ],
)
def test_a_redis_or_valkey_budget_backend_is_accepted(url: str) -> None:
    assert _settings(extra={"budget_backend": url}).budget_backend == url


@pytest.mark.parametrize(
    "url", ["memcached://cache:11211", "http://:secret-in-url@redis.example", "redis.example:6379"]
)
def test_another_kind_of_budget_backend_is_refused_without_quoting_it(url: str) -> None:
    with pytest.raises(ConnectionSettingsError, match="must be a URL of a Redis or Valkey store") as raised:
        _settings(extra={"budget_backend": url})
    assert url not in str(raised.value) and "secret-in-url" not in str(raised.value)


def test_a_bad_connection_names_itself_and_the_field() -> None:
    from airflow_provider_prisjakt.exceptions import PrisjaktConfigError

    with pytest.raises(PrisjaktConfigError, match="Connection 'prisjakt_x': .*'window_bounds' must be one of"):
        connection_settings(_StoredConnection({"window_bounds": "open"}), "prisjakt_x")


@pytest.mark.parametrize(("value", "expected"), [(None, "half_open"), ("INCLUSIVE", "inclusive"), ("dates", "dates")])
def test_window_bounds_default_to_half_open(value: str | None, expected: str) -> None:
    assert _settings(extra={"window_bounds": value}).window_bounds == expected
