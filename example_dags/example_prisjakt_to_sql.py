"""
Load Prisjakt conversion events, their clicks and daily purchase summaries into SQL, then compute
the cost of sales per day.

Every run exports its data interval (one UTC day) into three tables of one SQL connection with
``merge``, so re-runs and catch-up never duplicate a row. The last task joins the loaded tables:
cost of sales = what the clicks behind the day's purchases cost / the revenue of those purchases.

Connections: ``prisjakt_default`` (the Prisjakt API) and ``prisjakt_warehouse`` (any common-sql
database: SQLite, PostgreSQL or MySQL/MariaDB; set the ``dialect`` param to match).
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, Param
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator

WAREHOUSE = "prisjakt_warehouse"
SHOP_ID = 4242

# The day of a timestamp column, per SQL dialect; the rest of the query is standard SQL.
DAY_OF = {
    "sqlite": "substr({column}, 1, 10)",
    "postgres": "CAST({column} AS DATE)",
    "mysql": "DATE({column})",
}

COST_OF_SALES_SQL = """
DELETE FROM prisjakt_cost_of_sales WHERE day = '{{ data_interval_start | ds }}';
INSERT INTO prisjakt_cost_of_sales (day, currency, purchases, revenue, click_cost, cost_of_sales)
SELECT '{{ data_interval_start | ds }}', e.currency, COUNT(*), SUM(e.amount), SUM(c.cost),
       CASE WHEN SUM(e.amount) > 0 THEN SUM(c.cost) / SUM(e.amount) END
FROM prisjakt_events e
LEFT JOIN prisjakt_clicks c ON c.click_id = e.click_id
WHERE {{ params.day_of[params.dialect].format(column='e.event_time') }} = '{{ data_interval_start | ds }}'
GROUP BY e.currency;
"""

CREATE_COST_OF_SALES_SQL = """
CREATE TABLE IF NOT EXISTS prisjakt_cost_of_sales (
    day VARCHAR(10) NOT NULL,
    currency VARCHAR(3) NOT NULL,
    purchases INTEGER,
    revenue DECIMAL(38, 9),
    click_cost DECIMAL(38, 9),
    cost_of_sales DECIMAL(38, 9),
    PRIMARY KEY (day, currency)
);
"""

with DAG(
    dag_id="example_prisjakt_to_sql",
    description="Prisjakt events, clicks and purchase summaries into SQL, and cost of sales per day",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 10, 1),
    catchup=False,
    max_active_runs=1,
    params={
        "shop_id": Param(SHOP_ID, type="integer", description="The Prisjakt shop whose pixels are exported"),
        "dialect": Param("sqlite", enum=sorted(DAY_OF), description="The SQL dialect of the warehouse"),
        "day_of": DAY_OF,
    },
    tags=["example", "prisjakt"],
) as dag:
    common = {"shop_id": "{{ params.shop_id }}", "conn_id": WAREHOUSE, "write_disposition": "merge"}

    events = PrisjaktToSqlOperator(task_id="events_to_sql", resource="events", table="prisjakt_events", **common)
    clicks = PrisjaktToSqlOperator(task_id="clicks_to_sql", resource="clicks", table="prisjakt_clicks", **common)
    summaries = PrisjaktToSqlOperator(
        task_id="purchase_summary_to_sql",
        resource="purchase_summary",
        table="prisjakt_purchase_summary",
        **common,
    )
    create_report_table = SQLExecuteQueryOperator(
        task_id="create_cost_of_sales_table", conn_id=WAREHOUSE, sql=CREATE_COST_OF_SALES_SQL
    )
    cost_of_sales = SQLExecuteQueryOperator(
        task_id="cost_of_sales_per_day", conn_id=WAREHOUSE, sql=COST_OF_SALES_SQL, split_statements=True
    )

    [events, clicks, summaries, create_report_table] >> cost_of_sales
