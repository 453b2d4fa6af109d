"""The provider's self-description: schema, importable hooks, and both declarations of the form."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import sys
import types
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from airflow_provider_prisjakt import __version__
from airflow_provider_prisjakt.get_provider_info import get_provider_info
from airflow_provider_prisjakt.hooks.connection import CONN_TYPE, CONNECTION_EXTRA_FIELDS
from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook

WIDGET_CLASS_FOR_KIND = {"integer": "IntegerField", "number": "StringField", "string": "StringField"}


def _connection_type() -> dict[str, Any]:
    (connection_type,) = get_provider_info()["connection-types"]
    return connection_type


def _import(dotted: str) -> Any:
    module_name, _, attribute = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


# -- schema and imports --------------------------------------------------------------------------


def test_provider_info_validates_against_airflows_schema() -> None:
    schema = json.loads((files("airflow") / "provider_info.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(get_provider_info(), schema)


def test_provider_info_names_the_package_and_its_version() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-prisjakt"
    assert info["versions"][0] == __version__
    assert importlib.metadata.version("airflow-provider-prisjakt") == __version__


def test_entry_point_resolves_to_get_provider_info() -> None:
    (entry_point,) = [
        ep
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_prisjakt.")
    ]
    assert entry_point.load() is get_provider_info


def test_every_hook_module_imports() -> None:
    info = get_provider_info()
    integrations = {integration["integration-name"] for integration in info["integrations"]}
    for hook in info["hooks"]:
        assert hook["integration-name"] in integrations
        for module in hook["python-modules"]:
            importlib.import_module(module)


def test_connection_type_names_an_importable_hook_of_that_type() -> None:
    connection_type = _connection_type()
    assert connection_type["connection-type"] == CONN_TYPE == "prisjakt"
    hook_class = _import(connection_type["hook-class-name"])
    assert hook_class is PrisjaktHook
    assert hook_class.conn_type == connection_type["connection-type"]
    assert hook_class.hook_name == connection_type["hook-name"]
    assert hook_class.default_conn_name == "prisjakt_default"
    assert hasattr(hook_class(), hook_class.conn_name_attr)


def test_conn_field_schemas_are_valid_and_accept_their_defaults() -> None:
    for name, field in _connection_type()["conn-fields"].items():
        schema = field["schema"]
        jsonschema.Draft7Validator.check_schema(schema)
        jsonschema.validate(None, schema)  # an empty field is allowed
        if "default" in schema:
            jsonschema.validate(schema["default"], schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"not": name}, schema)


def test_enum_conn_fields_refuse_other_values() -> None:
    fields = _connection_type()["conn-fields"]
    jsonschema.validate("epoch", fields["reset_header"]["schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("sometimes", fields["reset_header"]["schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("basic", fields["auth_type"]["schema"])


# -- legacy form widgets vs conn-fields ----------------------------------------------------------


class _StandInUnboundField:
    """Shaped like ``wtforms.fields.core.UnboundField``: the field class and its arguments."""

    def __init__(self, field_class: type, *args: Any, **kwargs: Any) -> None:
        self.field_class = field_class
        self.args = args
        self.kwargs = kwargs


class _StandInField:
    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # wtforms fields outside a form are unbound
        return _StandInUnboundField(cls, *args, **kwargs)


class _StandInValidator:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


class _LazyText(str):
    """Stands in for flask_babel's LazyString: a label that is text only when rendered."""


@pytest.fixture
def form_widgets(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """
    Return ``PrisjaktHook.get_connection_form_widgets()``.

    Airflow 3 without the FAB provider ships neither wtforms nor flask-babel; there, minimal
    stand-ins with wtforms' shapes record what the hook declares. The hook itself runs unchanged.
    """
    try:
        importlib.import_module("wtforms")
        importlib.import_module("flask_babel")
    except ImportError:
        wtforms = types.ModuleType("wtforms")
        wtforms.IntegerField = type("IntegerField", (_StandInField,), {})  # type: ignore[attr-defined]
        wtforms.StringField = type("StringField", (_StandInField,), {})  # type: ignore[attr-defined]
        wtforms.PasswordField = type("PasswordField", (_StandInField,), {})  # type: ignore[attr-defined]
        validators = types.ModuleType("wtforms.validators")
        validators.NumberRange = type("NumberRange", (_StandInValidator,), {})  # type: ignore[attr-defined]
        validators.Optional = type("Optional", (_StandInValidator,), {})  # type: ignore[attr-defined]
        wtforms.validators = validators  # type: ignore[attr-defined]
        flask_babel = types.ModuleType("flask_babel")
        flask_babel.lazy_gettext = _LazyText  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "wtforms", wtforms)
        monkeypatch.setitem(sys.modules, "wtforms.validators", validators)
        monkeypatch.setitem(sys.modules, "flask_babel", flask_babel)
    return PrisjaktHook.get_connection_form_widgets()


def _label(widget: Any) -> str:
    label = widget.args[0] if widget.args else widget.kwargs["label"]
    return str(label)


def test_legacy_widgets_and_conn_fields_declare_the_same_fields(form_widgets: dict[str, Any]) -> None:
    conn_fields = _connection_type()["conn-fields"]
    assert list(form_widgets) == list(conn_fields)
    assert {name: _label(widget) for name, widget in form_widgets.items()} == {
        name: field["label"] for name, field in conn_fields.items()
    }


def test_legacy_widgets_and_conn_fields_declare_the_same_kinds(form_widgets: dict[str, Any]) -> None:
    for name, field in _connection_type()["conn-fields"].items():
        kind = next(kind for kind in field["schema"]["type"] if kind != "null")
        expected = "PasswordField" if field["schema"].get("format") == "password" else WIDGET_CLASS_FOR_KIND[kind]
        assert form_widgets[name].field_class.__name__ == expected, name


def test_the_budget_backend_url_is_masked_in_both_forms(form_widgets: dict[str, Any]) -> None:
    """A backend URL may carry a password (``redis://:secret@host``): both forms show it as one."""
    assert _connection_type()["conn-fields"]["budget_backend"]["schema"]["format"] == "password"
    assert form_widgets["budget_backend"].field_class.__name__ == "PasswordField"


def test_legacy_widgets_carry_the_defaults_and_descriptions(form_widgets: dict[str, Any]) -> None:
    for field in CONNECTION_EXTRA_FIELDS:
        kwargs = form_widgets[field.name].kwargs
        assert kwargs["default"] == field.default
        assert kwargs["description"] == field.description


def test_hook_ui_field_behaviour_equals_the_provider_info() -> None:
    declared = _connection_type()["ui-field-behaviour"]
    from_hook = PrisjaktHook.get_ui_field_behaviour()
    assert {key.replace("_", "-"): value for key, value in from_hook.items()} == declared
    assert set(from_hook) == {"hidden_fields", "relabeling", "placeholders"}


def test_hook_ui_field_behaviour_is_a_copy() -> None:
    first = PrisjaktHook.get_ui_field_behaviour()
    first["hidden_fields"].append("host")
    first["relabeling"]["login"] = "changed"
    assert PrisjaktHook.get_ui_field_behaviour() == {
        key.replace("-", "_"): value for key, value in _connection_type()["ui-field-behaviour"].items()
    }
