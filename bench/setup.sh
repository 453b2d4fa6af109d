#!/usr/bin/env bash
# Builds the two benchmark venvs; does nothing when they are up to date.
#   bench/.venv      Airflow + this package (editable) + the HTTP provider: ours, the floor, HttpOperator,
#                    and the driver (sandbox, replay front, moto server).
#   bench/.venv-dlt  dlt alone. It cannot share bench/.venv: under Airflow 3.3.2's constraints
#                    (fsspec==2026.9.0, botocore 1.44) pip finds no s3fs that dlt[filesystem] accepts.
# The package itself never depends on anything installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
AIRFLOW_VERSION=${AIRFLOW_VERSION:-3.3.2}
CONSTRAINTS=${CONSTRAINTS:-requirements/constraints-airflow-3.3.txt}
DLT_VERSION=${DLT_VERSION:-1.31.0}

stamp="bench/.venv/.bench-installed-$AIRFLOW_VERSION"
if [[ ! -f $stamp || pyproject.toml -nt $stamp || bench/setup.sh -nt $stamp || $CONSTRAINTS -nt $stamp ]]; then
  echo "Building bench/.venv (Airflow $AIRFLOW_VERSION; a few minutes the first time)"
  test -x bench/.venv/bin/python || "$PYTHON" -m venv bench/.venv
  bench/.venv/bin/python -m pip install -q --upgrade pip
  bench/.venv/bin/python -m pip install -q -c "$CONSTRAINTS" "apache-airflow==$AIRFLOW_VERSION" \
    -e ".[s3,sql,parquet,async,redis]" apache-airflow-providers-http apache-airflow-providers-postgres \
    "moto[server]" psycopg2-binary pyinstrument
  touch "$stamp"
fi

stamp="bench/.venv-dlt/.bench-installed-$DLT_VERSION"
if [[ ! -f $stamp || bench/setup.sh -nt $stamp ]]; then
  echo "Building bench/.venv-dlt (dlt $DLT_VERSION)"
  test -x bench/.venv-dlt/bin/python || "$PYTHON" -m venv bench/.venv-dlt
  bench/.venv-dlt/bin/python -m pip install -q --upgrade pip
  bench/.venv-dlt/bin/python -m pip install -q "dlt[parquet,postgres,filesystem]==$DLT_VERSION" pyinstrument
  touch "$stamp"
fi
