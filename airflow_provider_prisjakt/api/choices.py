"""
Closed sets given as text: an operator argument or connection extra turned into its enum member.

Pure: no I/O, no Airflow.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

Choice = TypeVar("Choice", bound=StrEnum)


def parse_choice(choices: type[Choice], value: Any, name: str, error: type[ValueError] = ValueError) -> Choice:
    """
    Return the member of ``choices`` that ``value`` is or names (exactly, case included).

    :param choices: the enum of the closed set.
    :param value: a member, or a member's value.
    :param name: the argument's name, for the message.
    :param error: the error to raise, a :class:`ValueError` subclass.
    :raises ValueError: (``error``) naming the argument, the allowed values and the value given.
    """
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(member.value for member in choices)
        raise error(f"{name} must be one of {allowed}, got {value!r}") from None
