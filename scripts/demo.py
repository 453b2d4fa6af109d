"""
`make demo`: the main job end to end, on embedded defaults.

It starts the Prisjakt sandbox with a realistic shop (three pixels, a month of events), runs the
example DAG ``example_prisjakt_to_sql`` into SQLite over three daily intervals with the real
Airflow CLI under a throwaway AIRFLOW_HOME, prints a short report and stops the sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook
from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig

if TYPE_CHECKING:
    from airflow_provider_prisjakt.api.ratelimit import RateLimitStatus

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "example_prisjakt_to_sql"
DAYS = ["2026-10-20", "2026-10-21", "2026-10-22"]
TABLES = ["prisjakt_events", "prisjakt_clicks", "prisjakt_purchase_summary", "prisjakt_cost_of_sales"]


def airflow(args: list[str], env: dict[str, str]) -> None:
    """Run the Airflow CLI of this venv; show its output only when it fails."""
    command = [str(Path(sys.executable).parent / "airflow"), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stdout.write(result.stdout[-4000:])
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"`airflow {' '.join(args)}` failed with exit code {result.returncode}")


def budget_now(sandbox: PrisjaktSandbox) -> RateLimitStatus | None:
    """Spend one request to read the client's rate-limit state, the way the sensor does."""
    os.environ["AIRFLOW_CONN_PRISJAKT_DEMO"] = sandbox.connection_json()
    hook = PrisjaktHook("prisjakt_demo")
    hook.get_client()
    return hook.rate_limit


def report(warehouse: Path, sandbox: PrisjaktSandbox, seconds: float) -> None:
    """Print rows per table, purchases and revenue per currency per day, and the API traffic."""
    with sqlite3.connect(warehouse) as db:
        print("\nRows per table")
        for table in TABLES:
            (count,) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
            print(f"  {table:<28} {count:>7}")
        print("\nPurchases and revenue per currency per day (all pixels)")
        print(f"  {'day':<12}{'currency':<10}{'purchases':>10}{'revenue':>14}{'cost of sales':>15}")
        rows = db.execute(
            "SELECT s.day, s.currency, SUM(s.purchases), SUM(s.total_amount), MAX(c.cost_of_sales) "
            "FROM prisjakt_purchase_summary s LEFT JOIN prisjakt_cost_of_sales c "
            "ON c.day = s.day AND c.currency = s.currency GROUP BY s.day, s.currency ORDER BY s.day, s.currency"
        ).fetchall()
        for day, currency, purchases, revenue, cost_of_sales in rows:
            ratio = f"{float(cost_of_sales):.2%}" if cost_of_sales is not None else "-"
            print(f"  {day!s:<12}{currency:<10}{purchases:>10}{float(revenue):>14,.2f}{ratio:>15}")
    requests = sandbox.requests
    statuses = Counter(record.status for record in requests)
    print("\nPrisjakt API traffic")
    print(f"  requests sent          {len(requests)}")
    print(f"  429 Too Many Requests  {statuses.get(429, 0)}")
    print(f"  rate limit             {sandbox.config.rate_limit} requests per {sandbox.config.rate_window:.0f} s")
    status = budget_now(sandbox)
    if status is not None:
        print(f"  budget left now        {status.remaining} of {status.limit}, window resets at {status.reset_at}")
    print(f"\nDone in {seconds:.0f} s. Warehouse: {warehouse}")


def main() -> None:
    """Run the demo."""
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="prisjakt-demo-"))
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(REPO / "example_dags" / f"{DAG_ID}.py", dags)
    warehouse = home / "warehouse.db"
    config = SandboxConfig(
        events_per_pixel=3100,  # about 100 purchases a day per pixel
        period_start=datetime(2026, 10, 1, tzinfo=UTC),
        period_end=datetime(2026, 11, 1, tzinfo=UTC),
        page_size=100,
    )
    with PrisjaktSandbox(config) as sandbox:
        print(f"Prisjakt sandbox at {sandbox.base_url} (shop 4242, pixels: {', '.join(sandbox.pixel_ids(4242))})")
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_PRISJAKT_DEFAULT": sandbox.connection_json(page_size=100),
            "AIRFLOW_CONN_PRISJAKT_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
        }
        print(f"Throwaway AIRFLOW_HOME {home}; migrating the metadata database ...")
        airflow(["db", "migrate"], env)
        for day in DAYS:
            print(f"Running {DAG_ID} for logical date {day} ...")
            airflow(["dags", "test", DAG_ID, day], env)
        report(warehouse, sandbox, time.monotonic() - started)
    print("Sandbox stopped.")


if __name__ == "__main__":
    main()
