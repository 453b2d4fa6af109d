"""
An export's window as the operators take it: ``lookback`` read and written back, and what to say
when a run has no window to export.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow_provider_prisjakt.api.windows import format_api_time
from airflow_provider_prisjakt.version_compat import AIRFLOW_V_3_0_PLUS

#: ``start`` and ``end`` templates for the UTC day before the run, that render in every run of this
#: Airflow. On Airflow 3 a manually triggered run may have no logical date, and so no ``ds``; every
#: run has ``dag_run.run_after``. On Airflow 2 every run has a logical date.
DAY_BEFORE_THE_RUN: tuple[str, str] = (
    ("{{ (dag_run.run_after - macros.timedelta(days=1)) | ds }}", "{{ dag_run.run_after | ds }}")
    if AIRFLOW_V_3_0_PLUS
    else ("{{ macros.ds_add(ds, -1) }}", "{{ ds }}")
)


def parse_lookback(value: timedelta | int | float | str | None) -> timedelta:
    """
    Read ``lookback``: a timedelta, a number of seconds, or an ISO-8601 duration such as ``P30D``.

    :raises ValueError: for anything else or a negative duration.
    """
    if value in (None, "", 0):
        return timedelta(0)
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        import pendulum

        try:
            parsed = pendulum.parse(value.strip())
        except Exception:
            parsed = None
        if not isinstance(parsed, timedelta):
            raise ValueError(f"lookback must be a timedelta, seconds or an ISO-8601 duration like P30D, got {value!r}")
        result = parsed
    else:
        raise ValueError(f"lookback must be a timedelta, seconds or an ISO-8601 duration, got {value!r}")
    if result < timedelta(0):
        raise ValueError("lookback must not be negative")
    return result


def format_lookback(value: timedelta) -> str:
    """Write a (non-negative) duration in ISO 8601 as a user would, e.g. ``P30D``, ``PT6H`` or ``P1DT0.5S``."""
    days, seconds = value.days, value.seconds + value.microseconds / 1_000_000
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(
        f"{amount:g}{unit}" for amount, unit in ((int(hours), "H"), (int(minutes), "M"), (seconds, "S")) if amount
    )
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "" if days else "T0S")


def describe_window(start: datetime, end: datetime, lookback: timedelta) -> str:
    """
    Say from when to when an export reads, and how much of it is the look-back, e.g.
    ``2026-09-20T00:00:00Z (2026-10-20T00:00:00Z minus the look-back P30D) to 2026-10-21T00:00:00Z``.

    :param start: the window's start, the look-back included.
    :param end: the window's end.
    :param lookback: the look-back, ``timedelta(0)`` for none.
    """
    since = format_api_time(start)
    if lookback:
        since += f" ({format_api_time(start + lookback)} minus the look-back {format_lookback(lookback)})"
    return f"{since} to {format_api_time(end)}"


def empty_window_message(context: Any) -> str:
    """
    Say why a run has no window to export, and how to give it one that works in exactly that run.

    :param context: the task's context; without ``data_interval_start`` the run has no data interval.
    """
    start, end = DAY_BEFORE_THE_RUN
    fix = f"Pass start= and end=, for example start='{start}' and end='{end}' (the UTC day before the run)"
    if context.get("data_interval_start") is None:
        return (
            "The export window is empty: this run was triggered without a logical date, so it has no data "
            f"interval. {fix}, or schedule the DAG with a data-interval timetable such as "
            "CronDataIntervalTimetable and trigger it with a logical date (the Trigger form's logical date, or "
            "airflow dags trigger --logical-date <time> <dag_id>), which gives the run the last complete interval before it."
        )
    return (
        "The export window is empty: this run's data interval has no length, as Airflow 3's default cron "
        f"timetable and schedule=None give. {fix}, or schedule the DAG with a data-interval timetable such as "
        "CronDataIntervalTimetable."
    )
