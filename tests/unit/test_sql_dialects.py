"""The pure parts of the SQL destination: identifiers, dialects, URIs and write-disposition statements."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import Connection

from airflow_provider_prisjakt.api.columns import ColumnKind
from airflow_provider_prisjakt.api.resources import EVENTS, PIXELS, PURCHASE_SUMMARY, Resource
from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.export.sinks.sql.dialects import (
    DIALECTS,
    MySqlDialect,
    PostgresDialect,
    SqlDialect,
    SqliteDialect,
    dialect_for,
)
from airflow_provider_prisjakt.export.sinks.sql.dispositions import (
    STRATEGIES,
    Load,
    LoadCounts,
    ReplaceWindow,
    Tally,
    WriteDisposition,
    parse_write_disposition,
    strategy_for,
)
from airflow_provider_prisjakt.export.sinks.sql.identifiers import check_identifier
from airflow_provider_prisjakt.export.sinks.sql.staging import StagingKey, StagingLabel, leftovers, stale, table_prefix

START = datetime(2026, 10, 5, tzinfo=UTC)
END = datetime(2026, 10, 12, tzinfo=UTC)


def load(resource: Resource = EVENTS, dialect: SqlDialect | None = None, **changes: Any) -> Load:
    """A load of the window [START, END) of two pixels into a keyed table."""
    base = Load(
        dialect=dialect or PostgresDialect(),
        resource=resource,
        target='"t"',
        staging='"s"',
        has_key=True,
        window=(START, END),
        targets=("p1", "p2"),
    )
    return dataclasses.replace(base, **changes)


# -- identifiers and staging ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["events", "_t1", "A" * 63])
def test_plain_identifiers_are_accepted(name: str) -> None:
    check_identifier(name, "table")


@pytest.mark.parametrize("name", ["events; DROP TABLE x", "a.b", "1abc", "", "A" * 64, 'x"y', None, 7])
def test_names_that_could_carry_sql_are_refused_naming_the_parameter(name: object) -> None:
    with pytest.raises(PrisjaktConfigError, match=r"^schema must be a plain SQL identifier"):
        check_identifier(name, "schema")


def staging_table_name(table: str, schema: str | None, resource: str, window: tuple[datetime, datetime]) -> str:
    """The staging table of an export outside Airflow, for one pixel."""
    target = f'"{schema}"."{table}"' if schema else f'"{table}"'
    return StagingKey.for_targets(target, resource, "p1", None, window).table_name(table)


def test_staging_tables_are_stable_per_window_distinct_across_windows_and_plain_identifiers() -> None:
    first = staging_table_name("events", None, "events", (START, END))
    later = staging_table_name("events", None, "events", (END, END.replace(day=19)))

    assert first == staging_table_name("events", None, "events", (START, END))
    assert first != later
    assert first.startswith("_pj_stage_events_")
    long_name = staging_table_name("t" * 63, "schema", "events", (START, END))
    check_identifier(long_name, "staging")


# -- dialects -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn_type", "dialect"),
    [
        ("postgres", PostgresDialect),
        ("postgresql", PostgresDialect),
        ("mysql", MySqlDialect),
        ("MariaDB", MySqlDialect),
        ("sqlite", SqliteDialect),
    ],
)
def test_each_connection_type_finds_its_dialect(conn_type: str, dialect: type[SqlDialect]) -> None:
    assert type(dialect_for(conn_type)) is dialect


def test_a_hook_dialect_name_is_the_fallback_and_anything_else_is_refused() -> None:
    assert type(dialect_for("google_cloud_sql", "postgresql")) is PostgresDialect
    with pytest.raises(PrisjaktConfigError, match=r"postgres, mysql \(MariaDB\) and sqlite.*'mssql'"):
        dialect_for("mssql", "mssql")


@pytest.mark.parametrize("dialect", sorted(set(DIALECTS.values()), key=lambda d: d.__name__))
def test_every_dialect_types_every_column_kind(dialect: type[SqlDialect]) -> None:
    assert set(dialect.types) == set(ColumnKind)


@pytest.mark.parametrize(
    ("conn", "schema", "uri"),
    [
        (Connection(conn_id="c", conn_type="postgres", host="db", schema="dw"), None, "postgres://db:5432/dw.public.t"),
        (
            Connection(conn_id="c", conn_type="postgres", host="db", login="u", port=6543),
            "s",
            "postgres://db:6543/u.s.t",
        ),
        (Connection(conn_id="c", conn_type="mysql", host="db", schema="dw"), None, "mysql://db:3306/dw.t"),
        (Connection(conn_id="c", conn_type="mysql", host="db", schema="dw"), "other", "mysql://db:3306/other.t"),
        (Connection(conn_id="c", conn_type="sqlite", host="/tmp/w.db"), None, "sqlite:///tmp/w.db/main.t"),
    ],
)
def test_each_dialect_names_the_table_as_a_uri_without_credentials(
    conn: Connection, schema: str | None, uri: str
) -> None:
    conn.password = "never-in-a-uri"

    assert dialect_for(conn.conn_type).table_uri(conn, schema, "t") == uri


def test_values_are_adapted_to_what_each_driver_stores() -> None:
    moment = datetime(2026, 10, 5, 12, 30, tzinfo=UTC)

    assert MySqlDialect().adapter(ColumnKind.TIMESTAMP)(moment) == datetime(2026, 10, 5, 12, 30)
    assert SqliteDialect().adapter(ColumnKind.TIMESTAMP)(moment) == "2026-10-05T12:30:00.000000+00:00"
    assert PostgresDialect().adapter(ColumnKind.TIMESTAMP)(moment) is moment
    assert SqliteDialect().adapter(ColumnKind.DATE)(None) is None


def test_identifiers_are_quoted_with_their_quote_doubled() -> None:
    assert PostgresDialect().qualified("s", 'a"b') == '"s"."a""b"'
    assert MySqlDialect().qualified(None, "a`b") == "`a``b`"


# -- write dispositions ---------------------------------------------------------------------------


def test_every_write_disposition_has_one_strategy() -> None:
    assert set(STRATEGIES) == set(WriteDisposition)
    assert all(strategy_for(d).disposition is d for d in WriteDisposition)


def test_write_dispositions_are_read_from_strings_once_and_unknown_ones_refused() -> None:
    assert parse_write_disposition("replace_window") is WriteDisposition.REPLACE_WINDOW
    with pytest.raises(PrisjaktConfigError, match=r"must be one of merge, replace_window, append, got 'upsert'"):
        parse_write_disposition("upsert")


def test_replace_window_deletes_the_window_of_the_exported_pixels_by_the_resource_columns() -> None:
    delete, held, insert = strategy_for(WriteDisposition.REPLACE_WINDOW).statements(load())

    assert delete.sql == 'DELETE FROM "t" WHERE "event_time" >= %s AND "event_time" < %s AND "pixel_id" IN (%s, %s)'
    assert delete.parameters == (START, END, "p1", "p2")
    assert insert.sql.startswith('INSERT INTO "t"') and "ON CONFLICT" in insert.sql
    # What each result tells: the rows deleted, then the staged keys held outside the window (updates).
    assert [delete.tally, held.tally, insert.tally] == [Tally.DELETED, Tally.HELD_KEYS, Tally.NOTHING]


def test_replace_window_widens_a_date_window_to_every_day_it_touches() -> None:
    partial = (datetime(2026, 10, 5, 6, tzinfo=UTC), datetime(2026, 10, 7, 1, tzinfo=UTC))
    delete, *_ = ReplaceWindow().statements(load(PURCHASE_SUMMARY, SqliteDialect(), window=partial))

    assert '"day" >= ? AND "day" < ? AND "pixel_id" IN (?, ?)' in delete.sql
    assert delete.parameters == ("2026-10-05", "2026-10-08", "p1", "p2")
    assert ReplaceWindow.bounds(load(PURCHASE_SUMMARY)) == (date(2026, 10, 5), date(2026, 10, 12))


def test_replace_window_of_a_resource_without_scope_deletes_the_whole_window() -> None:
    unscoped = dataclasses.replace(EVENTS, scope_column=None)

    delete, *_ = ReplaceWindow().statements(load(unscoped))

    assert "IN (" not in delete.sql
    assert delete.parameters == (START, END)


def test_replace_window_with_no_targets_deletes_nothing() -> None:
    statements = ReplaceWindow().statements(load(targets=()))

    writes = [statement.sql.split()[0] for statement in statements if statement.tally is not Tally.HELD_KEYS]
    assert writes == ["INSERT"]


def test_replace_window_refuses_resources_without_a_window() -> None:
    with pytest.raises(PrisjaktConfigError, match=r"resource='pixels' has none; use write_disposition='merge'"):
        strategy_for(WriteDisposition.REPLACE_WINDOW).check_resource(PIXELS)


def test_merge_upserts_and_needs_the_key_of_the_resource() -> None:
    held, insert = strategy_for(WriteDisposition.MERGE).statements(load(dialect=MySqlDialect()))

    assert "ON DUPLICATE KEY UPDATE" in insert.sql
    assert held.tally is Tally.HELD_KEYS
    with pytest.raises(PrisjaktConfigError, match=r"primary key or unique index on \(pixel_id, day, currency\) in t"):
        strategy_for(WriteDisposition.MERGE).check_target(PURCHASE_SUMMARY, "t", has_key=False)


def test_append_inserts_without_upsert_and_explains_a_keyed_failure() -> None:
    append = strategy_for(WriteDisposition.APPEND)
    (insert,) = append.statements(load())

    assert "ON CONFLICT" not in insert.sql
    assert insert.tally is Tally.INSERTED
    assert "write_disposition='merge'" in append.failure_hint(has_key=True)
    assert append.failure_hint(has_key=False) == ""


@pytest.mark.parametrize(
    ("results", "counts"),
    [
        pytest.param([(Tally.HELD_KEYS, -1, (10, 4)), (Tally.NOTHING, 14, None)], (6, 4, 0), id="merge"),
        pytest.param(
            [(Tally.DELETED, 7, None), (Tally.HELD_KEYS, -1, (10, 1)), (Tally.NOTHING, 10, None)],
            (9, 1, 7),
            id="replace_window with a key",
        ),
        pytest.param([(Tally.DELETED, 7, None), (Tally.INSERTED, 10, None)], (10, 0, 7), id="replace_window"),
        pytest.param([(Tally.INSERTED, 10, None)], (10, 0, 0), id="append"),
        pytest.param([(Tally.INSERTED, -1, None), (Tally.HELD_KEYS, -1, (0, None))], (0, 0, 0), id="nothing known"),
    ],
)
def test_a_load_counts_inserts_updates_and_deletes_from_its_statements_results(
    results: list[tuple[Tally, int, tuple[Any, ...] | None]], counts: tuple[int, int, int]
) -> None:
    tally = LoadCounts()
    for kind, rowcount, row in results:
        tally.record(kind, rowcount, row)

    assert (tally.inserted, tally.updated, tally.deleted) == counts
    assert tally.to_summary() == dict(zip(("rows_inserted", "rows_updated", "rows_deleted"), counts, strict=True))


def test_the_held_keys_count_reads_each_distinct_staged_key_once_against_the_target() -> None:
    held = load(PURCHASE_SUMMARY).held_keys()

    assert 'FROM (SELECT DISTINCT "pixel_id", "day", "currency" FROM "s")' in held.sql
    assert '"_pj_held"."currency" = "_pj_keys"."currency"' in held.sql
    assert held.parameters == ()


# -- staging tables -------------------------------------------------------------------------------

LONG_TABLE = "t" * 63


def task_key(
    run_id: str = "scheduled__2026-10-12T00:00:00+00:00", map_index: int = 0, task_id: str = "load"
) -> StagingKey:
    return StagingKey.for_task_instance('"events"', "daily", task_id, map_index, run_id)


def test_a_task_instance_has_one_staging_table_and_other_task_instances_never_share_it() -> None:
    name = task_key().table_name("events")

    assert name == task_key().table_name("events")  # every try, retry and resume of it
    others = {
        task_key(map_index=1).table_name("events"),
        task_key(task_id="other").table_name("events"),
        task_key(run_id="manual__2026-10-13").table_name("events"),
        StagingKey.for_task_instance('"other"', "daily", "load", 0, "r").table_name("events"),
    }
    assert name not in others and len(others) == 4
    # Every run of one task shares the group prefix, which the success of a later run cleans.
    assert task_key(run_id="manual__2026-10-13").table_name("events").startswith(task_key().group_prefix("events"))
    assert not task_key(map_index=1).table_name("events").startswith(task_key().group_prefix("events"))


@pytest.mark.parametrize("limit", [63, 64], ids=["postgres", "mysql"])
def test_staging_names_are_plain_identifiers_within_each_databases_length_limit(limit: int) -> None:
    names = [
        task_key(run_id="x" * 250, map_index=99999).table_name(LONG_TABLE),
        StagingKey.for_targets('"s"."t"', "events", "p" * 100, None, (START, END)).table_name(LONG_TABLE),
    ]

    for name in names:
        assert len(name) <= min(limit, 63)
        check_identifier(name, "staging")
        assert name.startswith(table_prefix(LONG_TABLE))


def test_a_staging_label_reads_back_and_holds_nothing_that_quotes() -> None:
    label = StagingLabel(window=(START, END), created=datetime(2026, 10, 12, 3, 4, 5, 6, tzinfo=UTC))

    text = label.to_text()

    assert StagingLabel.parse(text) == label
    assert StagingLabel.parse(f"CREATE TABLE x (/* {text} */ a TEXT)") == label
    assert not set("'\"`*\\;") & set(text)
    assert StagingLabel.parse(None) is None
    assert StagingLabel.parse("some comment a user wrote") is None


def test_leftovers_are_the_same_tasks_other_runs_of_the_same_window_only() -> None:
    mine, earlier, other_window, other_task = (
        task_key(),
        task_key(run_id="r1"),
        task_key(run_id="r2"),
        task_key(map_index=1, run_id="r1"),
    )
    created = datetime(2026, 10, 12, tzinfo=UTC)
    window_label = StagingLabel(window=(START, END), created=created).to_text()
    labels = {
        mine.table_name("events"): window_label,
        earlier.table_name("events"): window_label,
        other_window.table_name("events"): StagingLabel(window=(END, END), created=created).to_text(),
        other_task.table_name("events"): window_label,
        earlier.group_prefix("events") + "unlabelled": None,
    }

    found = leftovers(labels, mine.table_name("events"), mine.group_prefix("events"), (START, END))

    assert found == [earlier.table_name("events")]


def test_stale_staging_is_what_was_made_longer_ago_than_asked_and_unlabelled_tables_stay() -> None:
    now = datetime(2026, 10, 12, 12, tzinfo=UTC)
    labels = {
        "_pj_stage_a_old": StagingLabel(window=(START, END), created=now - timedelta(hours=49)).to_text(),
        "_pj_stage_a_new": StagingLabel(window=(START, END), created=now - timedelta(hours=47)).to_text(),
        "_pj_stage_a_unlabelled": None,
        "not_staging": StagingLabel(window=(START, END), created=now - timedelta(days=9)).to_text(),
    }

    assert stale(labels, now, timedelta(hours=48)) == ["_pj_stage_a_old"]
    assert stale(labels, now, timedelta(0)) == ["_pj_stage_a_new", "_pj_stage_a_old"]


def test_each_dialect_labels_a_table_where_its_catalog_keeps_it() -> None:
    create = 'CREATE TABLE IF NOT EXISTS "s" ("a" TEXT)'

    assert PostgresDialect().labelled(create, '"s"', "L") == [create, "COMMENT ON TABLE \"s\" IS 'L'"]
    assert MySqlDialect().labelled("CREATE TABLE `s` (`a` TEXT) ENGINE=InnoDB", "`s`", "L") == [
        "CREATE TABLE `s` (`a` TEXT) ENGINE=InnoDB COMMENT='L'"
    ]
    assert SqliteDialect().labelled(create, '"s"', "L") == ['CREATE TABLE IF NOT EXISTS "s" (/* L */ "a" TEXT)']
