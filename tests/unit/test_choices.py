"""parse_choice: a closed set's member from its value, or one error naming the argument and the allowed values."""

from __future__ import annotations

from enum import StrEnum

import pytest

from airflow_provider_prisjakt.api.choices import parse_choice


class Colour(StrEnum):
    RED = "red"
    DARK_BLUE = "dark_blue"


class ColourError(ValueError):
    pass


def test_a_value_gives_its_member_and_a_member_gives_itself() -> None:
    assert parse_choice(Colour, "dark_blue", "colour") is Colour.DARK_BLUE
    assert parse_choice(Colour, Colour.RED, "colour") is Colour.RED


@pytest.mark.parametrize("value", ["RED", "Red", "blue", "", None, 1, ["red"]])
def test_anything_else_is_one_error_naming_the_argument_the_allowed_values_and_the_value(value: object) -> None:
    with pytest.raises(ColourError) as raised:
        parse_choice(Colour, value, "colour", ColourError)

    assert str(raised.value) == f"colour must be one of red, dark_blue, got {value!r}"


def test_the_error_is_a_value_error_by_default() -> None:
    with pytest.raises(ValueError, match="^colour must be one of red, dark_blue, got 'green'$"):
        parse_choice(Colour, "green", "colour")
