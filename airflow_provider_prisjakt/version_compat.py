"""The Airflow version this provider runs on, for the few features that differ (as the official providers keep it)."""

from __future__ import annotations

import importlib.metadata


def _airflow_version() -> tuple[int, int]:
    major, minor = importlib.metadata.version("apache-airflow").split(".")[:2]
    return int(major), int(minor)


#: Airflow 3: runs may have no logical date, and assets (``AssetAlias``, ``outlet_events``) exist.
AIRFLOW_V_3_0_PLUS: bool = _airflow_version() >= (3, 0)
