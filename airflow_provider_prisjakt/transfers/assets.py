"""
Airflow 3 assets of the export operators: the alias each one declares, and the event it records.

Keys and tables are templated, and a SQL table's URI needs the connection's host, which a DAG file
must not read when it is parsed. So an export declares an ``AssetAlias`` named from its task, and at
run time attaches to it the concrete asset it wrote, in the URI form of Airflow's own providers,
with the run's figures as the event's ``extra``. Airflow 2 gets neither (see the README).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_prisjakt.version_compat import AIRFLOW_V_3_0_PLUS

#: The default name of the ``AssetAlias`` an export declares; ``{dag_id}`` and ``{task_id}`` are filled in.
DEFAULT_ASSET_ALIAS = "prisjakt/{dag_id}/{task_id}"

# How many dotted names end a SQL destination URI (``db.schema.table``, as OpenLineage names
# tables), which the providers' asset URIs write as path segments (``db/schema/table``).
_TABLE_NAME_PARTS = {"postgres": 3, "postgresql": 3, "mysql": 2, "sqlite": 2}


def asset_alias_name(pattern: str, dag_id: str, task_id: str) -> str:
    """
    Return the alias name ``pattern`` gives a task, e.g. ``prisjakt/daily_export/events_to_s3``.

    :param pattern: the name, in which ``{dag_id}`` and ``{task_id}`` are replaced.
    :raises ValueError: for any other placeholder, or an empty name.
    """
    try:
        name = pattern.format(dag_id=dag_id, task_id=task_id)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"asset_alias may use only the placeholders {{dag_id}} and {{task_id}}, got {pattern!r}"
        ) from err
    if not name.strip():
        raise ValueError("asset_alias must not be empty; pass asset_alias=None to declare no alias")
    return name


def asset_uri_of(destination: str) -> str:
    """
    Return the URI of a destination as Airflow's providers name it as an asset.

    Object stores keep their URI (``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///folder``).
    A table's dotted name becomes path segments: ``postgres://host:port/database/schema/table`` and
    ``mysql://host:port/database/table``, the forms of the PostgreSQL and MySQL providers, and
    ``sqlite:///<absolute path of the database file>/<schema>/<table>`` (``main`` unless the table
    is in an attached database), for which no provider defines a form.

    :param destination: the destination as a sink describes it.
    """
    scheme, separator, rest = destination.partition("://")
    parts = _TABLE_NAME_PARTS.get(scheme)
    if not separator or parts is None:
        return destination
    head, _, name = rest.rpartition("/")
    names = name.rsplit(".", parts - 1)
    if len(names) != parts:  # already written as path segments
        return destination
    return f"{scheme}://{head}/{'/'.join(names)}"


def default_outlets(outlets: Sequence[Any], alias_pattern: str | None, dag_id: str, task_id: str) -> list[Any]:
    """
    Return a task's outlets: its own if it has any, else the alias ``alias_pattern`` names.

    :param outlets: the outlets the task was given.
    :param alias_pattern: the alias name (see :func:`asset_alias_name`), or ``None`` for none.
    :param dag_id: the task's DAG.
    :param task_id: the task.
    """
    if alias_pattern is None:
        return list(outlets)
    name = asset_alias_name(alias_pattern, dag_id, task_id)  # checked on every Airflow, at parse time
    if outlets or not AIRFLOW_V_3_0_PLUS:
        return list(outlets)
    from airflow.providers.common.compat.sdk import AssetAlias

    return [AssetAlias(name=name)]


def record_asset_events(
    context: Mapping[str, Any], outlets: Sequence[Any], uri: str, extra: Mapping[str, Any]
) -> list[str]:
    """
    Attach the written asset to each alias among ``outlets``, and ``extra`` to each asset among them.

    Airflow records the events when the task succeeds. Nothing happens on Airflow 2, or outside a
    task run (a context without ``outlet_events``).

    :param context: the task's context.
    :param outlets: the task's outlets.
    :param uri: the asset written, see :func:`asset_uri_of`.
    :param extra: the event's extra (JSON-safe).
    :return: the names of the aliases and assets that got the event.
    """
    events = context.get("outlet_events")
    if not AIRFLOW_V_3_0_PLUS or events is None:
        return []
    from airflow.providers.common.compat.sdk import Asset, AssetAlias

    recorded = []
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            events[outlet].add(Asset(uri), extra=dict(extra))
            recorded.append(outlet.name)
        elif isinstance(outlet, Asset):
            events[outlet].extra.update(extra)
            recorded.append(outlet.name)
    return recorded
