"""Apache Airflow provider for the Prisjakt Click and Conversion API."""

from __future__ import annotations

__version__ = "0.1.0"
