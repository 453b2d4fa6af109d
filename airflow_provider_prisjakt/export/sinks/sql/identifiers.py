"""
Names in SQL: the plain identifiers a user may give for a table or schema, and the lock names
derived from a target table.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from airflow_provider_prisjakt.exceptions import PrisjaktConfigError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: The shortest identifier limit of the supported databases (PostgreSQL's; MySQL allows 64).
MAX_IDENTIFIER_LENGTH = 63


def check_identifier(value: Any, field: str) -> None:
    """
    Refuse a table or schema name that is not a plain SQL identifier.

    Names are quoted in every statement, but only plain names (letters, digits and ``_``, at most
    63 characters, not starting with a digit) are accepted, so a name can never carry SQL.

    :param value: the name.
    :param field: the parameter it came from, for the message.
    :raises PrisjaktConfigError: when the name is not a plain identifier.
    """
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise PrisjaktConfigError(
            f"{field} must be a plain SQL identifier (letters, digits and _, at most 63 characters, "
            f"not starting with a digit), got {value!r}"
        )


def lock_number(key: str) -> int:
    """Return a signed 64-bit number for ``key``, as PostgreSQL's advisory locks take."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def lock_name(key: str) -> str:
    """Return a MySQL lock name for ``key`` (at most 64 characters)."""
    return "prisjakt_" + hashlib.sha256(key.encode()).hexdigest()[:40]
