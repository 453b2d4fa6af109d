"""
A task state store in a JSON file, shaped like Airflow 3.3's ``task_state_store`` (``get``, ``set``,
``delete``), so that a test can hand one to an export in a worker process it kills, and to the
retry after it, on any Airflow version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class FileStateStore:
    """
    A task instance's state in one JSON file, written whole and atomically as the real store's rows are.

    :param path: the file; missing means empty.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def values(self) -> dict[str, Any]:
        """Every key and its value."""
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values().get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._write({**self.values(), key: json.loads(json.dumps(value))})

    def delete(self, key: str) -> None:
        values = self.values()
        values.pop(key, None)
        self._write(values)

    def _write(self, values: dict[str, Any]) -> None:
        staged = self.path.with_suffix(".tmp")
        staged.write_text(json.dumps(values))
        os.replace(staged, self.path)
