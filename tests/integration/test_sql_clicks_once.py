"""
Tables: clicks fetched once per table (the table answers which clicks it holds), and the rows each
load inserted, updated and deleted, against the sandbox and real PostgreSQL, MariaDB and SQLite.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_prisjakt.api.resources import CLICKS, PURCHASE_SUMMARY
from airflow_provider_prisjakt.export.sinks.sql.database import SqlDatabase
from airflow_provider_prisjakt.export.sinks.sql.held_keys import HeldKeys
from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator

from . import test_prisjakt_to_sql as sql_tests
from .test_clicks_once import DAYS, SANDBOX, SHOP, click_ids, click_requests, window
from .test_prisjakt_to_sql import NO_CONTEXT, START, TYPES, WAREHOUSE, Warehouse, expected_events, load

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing import PrisjaktSandbox

    from .conftest import HookFactory

pytestmark = pytest.mark.integration

# The SQL tests' fixtures: pytest finds fixtures among a module's names.
api, sandbox, warehouse = sql_tests.api, sql_tests.sandbox, sql_tests.warehouse


def clicks_operator(table: str, day: datetime, pixel: str, **kwargs: Any) -> PrisjaktToSqlOperator:
    """The daily clicks task of ``day`` with a week of look-back."""
    return PrisjaktToSqlOperator(
        task_id="clicks_to_sql",
        conn_id=WAREHOUSE,
        table=table,
        resource="clicks",
        pixel_id=pixel,
        start=day,
        end=day + timedelta(days=1),
        lookback="P7D",
        **kwargs,
    )


def daily_clicks(table: str, day: datetime, pixel: str, **kwargs: Any) -> dict[str, Any]:
    """The daily clicks run of ``day`` with a week of look-back, as a DAG would run it."""
    return clicks_operator(table, day, pixel, **kwargs).execute(NO_CONTEXT)


def table_clicks(warehouse: Warehouse, table: str) -> list[tuple[str, str]]:
    return sorted(warehouse.query(f"SELECT click_id, pixel_id FROM {warehouse.quote(table)}"))


def create_keyless_clicks_table(warehouse: Warehouse, table: str) -> None:
    """A clicks table the operator did not make, without a primary key: a log of runs."""
    columns = ", ".join(f"{warehouse.quote(c.name)} {TYPES[warehouse.dialect][c.kind]}" for c in CLICKS.all_columns)
    warehouse.execute(f"CREATE TABLE {warehouse.quote(table)} ({columns})")


# -- clicks once per table ----------------------------------------------------------------------------


def test_ten_daily_clicks_exports_with_a_week_of_look_back_request_each_click_once(
    sandbox_hook: HookFactory, warehouse: Warehouse
) -> None:
    sandbox, _ = sandbox_hook(**SANDBOX)
    pixel = sandbox.pixel_ids(SHOP)[0]
    table = warehouse.table_name()

    summaries = [daily_clicks(table, day, pixel) for day in DAYS]

    every_click = click_ids(sandbox, pixel, window(DAYS[0])[0], window(DAYS[-1])[1])
    assert len(every_click) > 150
    requested = click_requests(sandbox)
    assert set(requested) == every_click and set(requested.values()) == {1}
    # The table holds every click once, with the pixel it was read for.
    assert table_clicks(warehouse, table) == sorted((click, pixel) for click in every_click)
    seen: set[str] = set()
    for day, summary in zip(DAYS, summaries, strict=True):
        in_window = click_ids(sandbox, pixel, *window(day))
        assert summary["requests_saved"] == len(in_window & seen)
        assert summary["rows"] == summary["rows_inserted"] == len(in_window - seen)
        assert (summary["rows_updated"], summary["rows_deleted"], summary["files"]) == (0, 0, 0)
        seen |= in_window
    assert sum(summary["requests_saved"] for summary in summaries) > len(every_click)  # the look-back's repeats
    assert not warehouse.staging_tables(table)


def test_a_rerun_of_a_clicks_window_fetches_no_click_the_table_holds_and_leaves_it_unchanged(
    sandbox_hook: HookFactory, warehouse: Warehouse
) -> None:
    sandbox, _ = sandbox_hook(**SANDBOX)
    pixel = sandbox.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    daily_clicks(table, DAYS[0], pixel)
    before = table_clicks(warehouse, table)
    sandbox.clear_requests()

    summary = daily_clicks(table, DAYS[0], pixel)

    assert not click_requests(sandbox)
    assert summary["requests_saved"] == len(click_ids(sandbox, pixel, *window(DAYS[0])))
    assert (summary["rows"], summary["rows_inserted"], summary["rows_updated"]) == (0, 0, 0)
    assert table_clicks(warehouse, table) == before


def test_a_clicks_table_without_a_key_is_a_log_of_runs_and_each_run_fetches_its_clicks(
    sandbox_hook: HookFactory, warehouse: Warehouse
) -> None:
    # Without a key nothing says a click is held, and a lookup would scan the table: append keeps every run.
    sandbox, _ = sandbox_hook(**SANDBOX)
    pixel = sandbox.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    create_keyless_clicks_table(warehouse, table)

    for _ in range(2):
        summary = daily_clicks(table, DAYS[0], pixel, write_disposition="append", create_table=False)

    in_window = click_ids(sandbox, pixel, *window(DAYS[0]))
    assert Counter(click_requests(sandbox).values()) == {2: len(in_window)}
    assert summary["requests_saved"] == 0
    assert summary["rows_inserted"] == len(in_window)
    assert Counter(click for click, _ in table_clicks(warehouse, table)) == dict.fromkeys(in_window, 2)


def test_a_clicks_export_deferred_mid_window_resumes_without_fetching_a_click_twice(
    sandbox_hook: HookFactory, warehouse: Warehouse
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    sandbox, _ = sandbox_hook(**SANDBOX, extra={"max_inline_wait": 1})
    pixel = sandbox.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    daily_clicks(table, DAYS[0], pixel)
    held_before = len(click_ids(sandbox, pixel, *window(DAYS[0])))
    sandbox.reset_rate_limit()
    sandbox.configure(rate_limit=8)  # the events pages and a few clicks, then the budget is spent for an hour
    try:
        with pytest.raises(TaskDeferred) as deferred:
            clicks_operator(table, DAYS[3], pixel, deferrable=True).execute(NO_CONTEXT)
    finally:
        sandbox.configure(rate_limit=10_000)
        sandbox.reset_rate_limit()
    before_pause = sum(click_requests(sandbox).values())
    event = {"status": "success", "resume": deferred.value.kwargs["resume"]}

    summary = clicks_operator(table, DAYS[3], pixel, deferrable=True).execute_complete(NO_CONTEXT, event=event)

    requested = click_requests(sandbox)
    both = click_ids(sandbox, pixel, *window(DAYS[0])) | click_ids(sandbox, pixel, *window(DAYS[3]))
    assert set(requested) == both and set(requested.values()) == {1}
    assert held_before < before_pause < len(both)  # clicks were fetched on both sides of the pause
    assert table_clicks(warehouse, table) == sorted((click, pixel) for click in both)
    assert summary["deferrals"] == 1
    assert summary["rows_inserted"] == len(both) - held_before
    assert not warehouse.staging_tables(table)


def test_lookups_hold_no_lock_on_the_table_between_them(sandbox_hook: HookFactory, warehouse: Warehouse) -> None:
    sandbox, _ = sandbox_hook(**SANDBOX)
    pixel = sandbox.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    daily_clicks(table, DAYS[0], pixel)
    held_click = table_clicks(warehouse, table)[0][0]
    held = HeldKeys(SqlDatabase.of(WAREHOUSE), warehouse.quote(table), "click_id", table)
    try:
        assert held_click in held
        assert "not-a-click" not in held

        # Another session takes the table's strongest lock at once, without waiting.
        q = warehouse.quote(table)
        if warehouse.dialect == "postgres":
            statements = ["BEGIN", f"LOCK TABLE {q} IN ACCESS EXCLUSIVE MODE NOWAIT", "ROLLBACK"]
        elif warehouse.dialect == "mysql":
            statements = ["SET SESSION lock_wait_timeout = 1", f"LOCK TABLES {q} WRITE", "UNLOCK TABLES"]
        else:
            statements = ["PRAGMA busy_timeout = 0", "BEGIN EXCLUSIVE", "ROLLBACK"]
        for statement in statements:
            warehouse.execute(statement)
        assert held_click in held
    finally:
        held.close()


# -- rows inserted, updated and deleted ------------------------------------------------------------------


def test_merge_counts_new_keys_as_inserted_and_keys_the_table_held_as_updated(
    api: PrisjaktSandbox, warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    pixel = api.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    expected = expected_events(api, pixel)

    first = load(table, pixel_id=pixel)
    warehouse.execute(
        f"DELETE FROM {warehouse.quote(table)} WHERE event_id = {warehouse.placeholder}", (expected[0][0],)
    )
    with caplog.at_level(logging.INFO):
        second = load(table, pixel_id=pixel)

    assert (first["rows_inserted"], first["rows_updated"], first["rows_deleted"]) == (len(expected), 0, 0)
    assert (second["rows_inserted"], second["rows_updated"], second["rows_deleted"]) == (1, len(expected) - 1, 0)
    assert second["files"] == 0
    assert (second["table"], second["write_disposition"]) == (table, "merge")
    messages = [record.getMessage() for record in caplog.records]
    split = f"1 inserted, {len(expected) - 1} updated, 0 deleted"
    assert f"Loaded {len(expected)} rows into {table} (merge): {split}" in messages
    assert not [message for message in messages if "part(s)" in message]


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "without key"])
def test_replace_window_counts_the_window_deleted_and_inserted_again(
    api: PrisjaktSandbox, warehouse: Warehouse, keyed: bool
) -> None:
    pixel = api.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    if not keyed:
        warehouse.create_events_table(table)
    expected = expected_events(api, pixel)
    load(table, pixel_id=pixel, write_disposition="replace_window", create_table=keyed)
    warehouse.insert_event(table, "gone-from-the-api", pixel, START + timedelta(days=1))

    summary = load(table, pixel_id=pixel, write_disposition="replace_window", create_table=keyed)

    assert summary["rows_deleted"] == len(expected) + 1
    assert (summary["rows_inserted"], summary["rows_updated"]) == (len(expected), 0)
    assert warehouse.count(table) == len(expected)


def test_replace_window_counts_a_key_held_outside_the_window_as_updated(
    api: PrisjaktSandbox, warehouse: Warehouse
) -> None:
    pixel = api.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    expected = expected_events(api, pixel)
    load(table, pixel_id=pixel, write_disposition="replace_window")
    # The row of one event now lies outside the window, so the window delete does not remove it.
    moved = expected[0][0]
    earlier = warehouse.value(START - timedelta(days=3))
    ph = warehouse.placeholder
    warehouse.execute(f"UPDATE {warehouse.quote(table)} SET event_time = {ph} WHERE event_id = {ph}", (earlier, moved))

    summary = load(table, pixel_id=pixel, write_disposition="replace_window")

    assert (summary["rows_deleted"], summary["rows_inserted"], summary["rows_updated"]) == (
        len(expected) - 1,
        len(expected) - 1,
        1,
    )
    assert warehouse.count(table) == len(expected)


def test_append_counts_every_row_as_inserted(api: PrisjaktSandbox, warehouse: Warehouse) -> None:
    pixel = api.pixel_ids(SHOP)[0]
    table = warehouse.table_name()
    warehouse.create_events_table(table)

    summaries = [load(table, pixel_id=pixel, write_disposition="append", create_table=False) for _ in range(2)]

    n = len(expected_events(api, pixel))
    assert [(s["rows_inserted"], s["rows_updated"], s["rows_deleted"]) for s in summaries] == [(n, 0, 0)] * 2


def test_a_key_of_several_columns_is_counted_per_row(api: PrisjaktSandbox, warehouse: Warehouse) -> None:
    pixel = api.pixel_ids(SHOP)[1]
    table = warehouse.table_name()
    assert len(PURCHASE_SUMMARY.primary_key) == 3

    first = load(table, resource="purchase_summary", pixel_id=pixel)
    second = load(table, resource="purchase_summary", pixel_id=pixel)

    rows = warehouse.count(table)
    assert rows > 1
    assert (first["rows_inserted"], first["rows_updated"]) == (rows, 0)
    assert (second["rows_inserted"], second["rows_updated"]) == (0, rows)
