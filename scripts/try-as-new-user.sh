#!/usr/bin/env bash
# `make try-as-new-user`: install and run the package as a newcomer would, from scratch, then clean up.
#
# Builds the wheel from this clone's files (those git tracks or would track, as they are now), installs it
# with its extras, apache-airflow and the PostgreSQL provider into a throwaway venv under /tmp (pinned by the
# project's constraints), and runs the README's complete DAG with `airflow dags test` against the sandbox,
# moto_server (S3) and a throwaway PostgreSQL database, with every connection given as AIRFLOW_CONN_*.
# Not part of `make test` or CI: it pays for a fresh Airflow install (a few minutes).
#
# Settings (environment): PYTHON, AIRFLOW_VERSION, CONSTRAINTS (relative to the clone), LOGICAL_DATE,
# PGHOST/PGPORT/PGUSER/PGPASSWORD (a server where that user may create databases), KEEP=1 keeps the folder.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
AIRFLOW_VERSION="${AIRFLOW_VERSION:-3.3.2}"
CONSTRAINTS="${CONSTRAINTS:-requirements/constraints-airflow-3.3.txt}"
# The README's "First run": this run exports 2026-10-20, a day inside the sandbox's data period.
LOGICAL_DATE="${LOGICAL_DATE:-2026-10-21}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
KEEP="${KEEP:-0}"
# What the README tells a user to install for its DAG, and a local S3 to run it against.
EXTRAS="sql,s3,parquet"
EXTRA_PACKAGES=(apache-airflow-providers-postgres "moto[server]")

WORK="$(mktemp -d /tmp/prisjakt-new-user.XXXXXX)"
VENV="$WORK/venv"
DATABASE="prisjakt_new_user_$(tr '[:upper:]' '[:lower:]' <<<"${WORK##*.}")"
PIDS=()

step() { printf '\n== %s\n' "$*"; }
fail() {
  printf 'try-as-new-user: %s\n' "$*" >&2
  exit 1
}

# Runs the SQL $2 on database $1 with the venv's psycopg2 (server and user from libpq's PG* variables),
# printing any rows it returns.
pg() {
  local dbname="$1" sql="$2"
  "$VENV/bin/python" -c '
import sys
import psycopg2
conn = psycopg2.connect(dbname=sys.argv[1], connect_timeout=5)
conn.autocommit = True
with conn.cursor() as cursor:
    cursor.execute(sys.argv[2])
    if cursor.description:
        print("\n".join(" ".join(str(v) for v in row) for row in cursor.fetchall()))
conn.close()
' "$dbname" "$sql"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "${DATABASE_CREATED:-}" ]]; then
    pg postgres "DROP DATABASE IF EXISTS \"$DATABASE\" WITH (FORCE)" >/dev/null || echo "could not drop database $DATABASE" >&2
  fi
  if [[ "$KEEP" == 1 ]]; then
    echo "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  if [[ $status -eq 0 ]]; then
    printf '\ntry-as-new-user: PASSED\n'
  else
    printf '\ntry-as-new-user: FAILED (exit %s)\n' "$status" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until file $1 has a line starting with $2, while process $3 lives; at most $4 seconds.
wait_for_line() {
  local file="$1" prefix="$2" pid="$3" deadline=$((SECONDS + $4))
  until grep -q "^$prefix" "$file" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || fail "$(basename "$file" .log) exited: $(tail -5 "$file")"
    ((SECONDS < deadline)) || fail "no '$prefix' from $(basename "$file" .log) within $4 s"
    sleep 0.2
  done
}

# Fail before the long install when PostgreSQL is not even listening.
"$PYTHON" -c 'import os, socket; socket.create_connection((os.environ["PGHOST"], int(os.environ["PGPORT"])), 3).close()' 2>/dev/null ||
  fail "nothing listens on $PGHOST:$PGPORT; the README's DAG needs PostgreSQL (set PGHOST, PGPORT, PGUSER, PGPASSWORD)"

step "1/6 Copy the clone's files to $WORK/src and build the wheel"
mkdir "$WORK/src"
cd "$REPO"
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' path; do [[ -e "$path" ]] && printf '%s\0' "$path"; done |
  tar --null -T - -cf - | tar -xf - -C "$WORK/src"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/airflow_provider_prisjakt-*.whl)"
echo "built $(basename "$WHEEL")"

step "2/6 Install it with [$EXTRAS], apache-airflow==$AIRFLOW_VERSION, ${EXTRA_PACKAGES[*]} (constraints: $CONSTRAINTS)"
"$VENV/bin/python" -m pip install -q -c "$REPO/$CONSTRAINTS" \
  "apache-airflow==$AIRFLOW_VERSION" "$WHEEL[$EXTRAS]" "${EXTRA_PACKAGES[@]}"
cd "$WORK" # nothing below may import the clone's sources instead of the installed wheel
"$VENV/bin/python" -c 'import airflow_provider_prisjakt as p; print("installed", p.__version__, "at", p.__file__)'

step "3/6 Start the sandbox, moto_server (S3) and a throwaway PostgreSQL database"
"$VENV/bin/python" -m airflow_provider_prisjakt.testing serve --port 0 >"$WORK/sandbox.log" 2>&1 &
PIDS+=($!)
wait_for_line "$WORK/sandbox.log" READY "$!" 30
grep -v '^AIRFLOW_CONN_\|^Client secret' "$WORK/sandbox.log"
connection_line="$(grep '^AIRFLOW_CONN_PRISJAKT_DEFAULT=' "$WORK/sandbox.log")"
connection_line="${connection_line#AIRFLOW_CONN_PRISJAKT_DEFAULT=\'}"
export AIRFLOW_CONN_PRISJAKT_DEFAULT="${connection_line%\'}"

S3_PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto_server.log" 2>&1 &
PIDS+=($!)
S3_URL="http://127.0.0.1:$S3_PORT"
"$VENV/bin/python" - "$S3_URL" <<'PY' || fail "moto_server did not answer on $S3_URL: $(tail -5 "$WORK/moto_server.log")"
import sys, time, urllib.error, urllib.request

deadline = time.monotonic() + 30
while True:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        break
    except urllib.error.HTTPError:
        break  # any HTTP answer means it is up
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.2)
PY
export AIRFLOW_CONN_AWS_DEFAULT="{\"conn_type\": \"aws\", \"extra\": {\"endpoint_url\": \"$S3_URL\",
  \"aws_access_key_id\": \"testing\", \"aws_secret_access_key\": \"testing\", \"region_name\": \"us-east-1\"}}"
echo "moto_server at $S3_URL"

pg postgres "SELECT 1" >/dev/null ||
  fail "PostgreSQL at $PGHOST:$PGPORT (user $PGUSER) is not reachable; set PGHOST, PGPORT, PGUSER, PGPASSWORD"
pg postgres "CREATE DATABASE \"$DATABASE\"" >/dev/null
DATABASE_CREATED=1
export AIRFLOW_CONN_WAREHOUSE="$("$VENV/bin/python" -c '
import json, os, sys
print(json.dumps({"conn_type": "postgres", "host": os.environ["PGHOST"], "port": int(os.environ["PGPORT"]),
                  "login": os.environ["PGUSER"], "password": os.environ.get("PGPASSWORD", ""), "schema": sys.argv[1]}))
' "$DATABASE")"
echo "PostgreSQL database $DATABASE on $PGHOST:$PGPORT"

step "4/6 Airflow home in $WORK/airflow: migrate, create the pool, write the README's DAG"
export AIRFLOW_HOME="$WORK/airflow" AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$AIRFLOW_HOME/dags"
mkdir -p "$AIRFLOW__CORE__DAGS_FOLDER"
"$VENV/bin/airflow" db migrate >"$WORK/db-migrate.log" 2>&1 || fail "airflow db migrate failed: $(tail -5 "$WORK/db-migrate.log")"
"$VENV/bin/airflow" pools set prisjakt 4 "Prisjakt client id"
"$PYTHON" "$WORK/src/scripts/readme_dag.py" "$WORK/src/README.md" >"$AIRFLOW__CORE__DAGS_FOLDER/readme_dag.py"
DAG_ID="$("$PYTHON" "$WORK/src/scripts/readme_dag.py" --dag-id "$WORK/src/README.md")"
BUCKET="$(sed -n 's/^ *s3_bucket="\([^"]*\)".*/\1/p' "$AIRFLOW__CORE__DAGS_FOLDER/readme_dag.py")"
[[ -n "$BUCKET" ]] || fail "no literal s3_bucket=\"…\" in the README's DAG"
"$VENV/bin/python" -c "import boto3, json, os; extra = json.loads(os.environ['AIRFLOW_CONN_AWS_DEFAULT'])['extra']
boto3.client('s3', **extra).create_bucket(Bucket='$BUCKET')"
echo "DAG $DAG_ID in $AIRFLOW__CORE__DAGS_FOLDER/readme_dag.py, bucket $BUCKET"

step "5/6 airflow dags test $DAG_ID $LOGICAL_DATE"
if ! "$VENV/bin/airflow" dags test "$DAG_ID" "$LOGICAL_DATE" >"$WORK/dags-test.log" 2>&1; then
  tail -60 "$WORK/dags-test.log"
  fail "airflow dags test failed (the whole log: KEEP=1 keeps $WORK/dags-test.log)"
fi
grep 'DagRun Finished' "$WORK/dags-test.log" | grep -o 'dag_id=[^,]*\|, state=[a-z]*\|data_interval_[a-z]*=[^,]*' |
  tr -d ',' | tr '\n' ' ' && echo

step "6/6 Check what landed in PostgreSQL and S3"
"$VENV/bin/python" - "$DATABASE" "$BUCKET" <<'PY'
import json
import os
import sys

import boto3
import psycopg2

database, bucket = sys.argv[1:]
with psycopg2.connect(dbname=database) as conn, conn.cursor() as cursor:
    cursor.execute("SELECT COUNT(*), COUNT(DISTINCT pixel_id) FROM prisjakt_events")
    events, pixels = cursor.fetchone()
    cursor.execute("SELECT COUNT(*), COALESCE(SUM(purchases), 0) FROM prisjakt_purchase_summary")
    summary_rows, purchases = cursor.fetchone()
s3 = boto3.client("s3", **json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])["extra"])
keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for item in page.get("Contents", [])]
manifests = [key for key in keys if key.endswith("/_manifest.json")]
s3_rows = sum(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["rows"] for key in manifests)
print(f"PostgreSQL: {events} events of {pixels} pixels, {summary_rows} purchase-summary rows ({purchases} purchases)")
print(f"S3: {len(keys)} objects, {len(manifests)} manifest(s) listing {s3_rows} rows: {', '.join(manifests)}")
problems = []
if events == 0 or summary_rows == 0:
    problems.append("a PostgreSQL table is empty")
if not manifests:
    problems.append("S3 holds no _manifest.json")
if s3_rows != events:
    problems.append(f"S3 holds {s3_rows} event rows but PostgreSQL {events}")
if problems:
    sys.exit("; ".join(problems))
PY
