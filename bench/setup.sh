#!/usr/bin/env bash
# Builds the three benchmark venvs; does nothing when they are up to date.
#   bench/.venv              Airflow + this package (editable) + the HTTP provider: ours, the floor,
#                            HttpOperator, and the driver (sandbox, replay front, moto server).
#   bench/.venv-dlt          dlt alone. It cannot share bench/.venv: under Airflow 3.3.2's constraints
#                            (fsspec==2026.9.0, botocore 1.44) pip finds no s3fs that dlt[filesystem] accepts.
#   bench/.venv-dlt-airflow  Airflow + dlt[postgres] (no filesystem extra): dlt run inside an Airflow task
#                            (PythonOperator), so that it pays Airflow's import as ours does. dlt goes in
#                            under Airflow's constraints; if pip cannot resolve that, dlt is installed in a
#                            second call without them and the versions that moved are kept in
#                            bench/.venv-dlt-airflow/.unconstrained (RESULTS.md lists them).
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

venv=bench/.venv-dlt-airflow
stamp="$venv/.bench-installed-$AIRFLOW_VERSION-$DLT_VERSION"
if [[ ! -f $stamp || bench/setup.sh -nt $stamp || $CONSTRAINTS -nt $stamp ]]; then
  echo "Building $venv (Airflow $AIRFLOW_VERSION + dlt[postgres] $DLT_VERSION)"
  test -x $venv/bin/python || "$PYTHON" -m venv $venv
  $venv/bin/python -m pip install -q --upgrade pip
  rm -f $venv/.unconstrained
  if ! $venv/bin/python -m pip install -q -c "$CONSTRAINTS" "apache-airflow==$AIRFLOW_VERSION" \
    "dlt[postgres]==$DLT_VERSION"; then
    echo "dlt[postgres]==$DLT_VERSION does not resolve under $CONSTRAINTS: installing it without them"
    $venv/bin/python -m pip install -q -c "$CONSTRAINTS" "apache-airflow==$AIRFLOW_VERSION"
    $venv/bin/python -m pip freeze --exclude-editable | sort > $venv/.freeze-constrained
    $venv/bin/python -m pip install -q "dlt[postgres]==$DLT_VERSION"
    $venv/bin/python -m pip freeze --exclude-editable | sort \
      | comm -13 $venv/.freeze-constrained - > $venv/.unconstrained
  fi
  touch "$stamp"
fi
