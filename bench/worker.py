"""
One measured run of one tool, in its own process (started by ``bench/run.py``).

Usage: ``python bench/worker.py '<json spec>'``. The spec names the ``job`` (``extract``, ``export``,
``ratelimit`` or ``longreset``), the ``tool`` and its parameters. The last line printed is
``RESULT <json>``. The parent reads peak RSS and CPU time of this process from ``os.wait4``; this
process reports what only it can see: rows, the timed section's wall and CPU time, its RSS once
imports and set-up were done, and output bytes.

This file runs under three interpreters (``bench/.venv`` with Airflow, ``bench/.venv-dlt`` with dlt,
``bench/.venv-dlt-airflow`` with both), so it imports nothing of either at module level.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.IGNORECASE)


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """
    Peak RSS of this address space (VmHWM), or of a child process, whichever is larger.

    ``ru_maxrss`` from ``wait4`` is not used for this: Linux carries it across ``execve``, so a
    worker would inherit the driver's RSS at fork time (the driver holds the replay cache).
    """
    import resource

    hwm = 0
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)


def window_params(spec: dict[str, Any]) -> dict[str, Any]:
    """The first page's query, exactly as the provider sends it (the replay front keys on it)."""
    return {"from": spec["from"], "to": spec["to"], "limit": spec["page_size"]}


def folder_bytes(path: str) -> int:
    """Bytes of every file below ``path``."""
    total = 0
    for directory, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(directory, name)) for name in files)
    return total


class Timer:
    """Wall and CPU time of the measured section, and the RSS just before it."""

    def __init__(self) -> None:
        self.rss_before = 0
        self.wall = 0.0
        self.cpu = 0.0

    @contextmanager
    def section(self) -> Iterator[None]:
        profile_path = os.environ.get("BENCH_PROFILE")
        profiler = None
        if profile_path:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
        # Settle the garbage the imports left behind before the clock starts, for every tool alike:
        # otherwise the first full collection of the import heap lands in the timed section.
        gc.collect()
        self.rss_before = rss_bytes()
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.start()
        try:
            yield
        finally:
            self.wall = time.perf_counter() - wall
            self.cpu = time.process_time() - cpu
            if profiler is not None:
                profiler.stop()
                text = profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False)
                with open(str(profile_path), "w") as handle:
                    handle.write(text)

    def result(self, **values: Any) -> dict[str, Any]:
        return {"wall_s": self.wall, "cpu_s": self.cpu, "rss_before_work": self.rss_before, **values}


# -- extraction -------------------------------------------------------------------------------------


def extract_floor(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """The floor: one requests session, download each page, json.loads it, follow rel=next."""
    import requests

    session = requests.Session()
    session.headers.update({"client-id": spec["client_id"], "client-secret": spec["client_secret"]})
    rows = pages = 0
    with timer.section():
        url: str | None = f"{spec['base_url']}/pixels/{spec['pixel_id']}/events"
        params: dict[str, Any] | None = window_params(spec)
        while url:
            response = session.get(url, params=params)
            response.raise_for_status()
            rows += len(json.loads(response.content))
            pages += 1
            match = NEXT_LINK.search(response.headers.get("Link", ""))
            url, params = (match.group(1) if match else None), None
    return timer.result(rows=rows, pages=pages)


def extract_ours(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """The operators' reading path, counting records: ``read_events`` (EventsReader, as ``iter_events``)."""
    from airflow_provider_prisjakt.export.readers import read_events
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook

    hook = PrisjaktHook()
    hook.settings  # noqa: B018 - read the connection before the clock starts, as every tool does
    rows = 0
    with timer.section():
        for _ in read_events(hook, spec["pixel_id"], spec["from"], spec["to"]):
            rows += 1
    return timer.result(rows=rows, pages=hook.stats.requests)


def http_pagination(response: Any) -> dict[str, Any] | None:
    """The pagination_function a user writes for HttpOperator: follow rel=next, as its docs show."""
    from urllib.parse import parse_qsl, urlsplit

    link = response.links.get("next")
    if not link:
        return None
    return {"data": dict(parse_qsl(urlsplit(link["url"]).query))}


def http_operator(spec: dict[str, Any], **kwargs: Any) -> Any:
    from airflow.providers.http.operators.http import HttpOperator

    return HttpOperator(
        task_id="http_events",
        http_conn_id="bench_http",
        method="GET",
        endpoint=f"pixels/{spec['pixel_id']}/events",
        data=window_params(spec),
        headers={"client-id": spec["client_id"], "client-secret": spec["client_secret"]},
        pagination_function=http_pagination,
        response_filter=lambda responses: sum(len(json.loads(r.content)) for r in responses),
        log_response=False,
        **kwargs,
    )


def extract_floor_in_airflow(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """Diagnostic: the floor loop in a process that imported what ours imports (Airflow's heap)."""
    from airflow_provider_prisjakt.hooks.prisjakt import PrisjaktHook

    PrisjaktHook().settings  # noqa: B018 - same set-up as ours, unused
    return extract_floor(spec, timer)


def extract_ours_without_gc(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """Diagnostic: ours with the cyclic garbage collector off during the fetch."""
    gc.disable()
    return extract_ours(spec, timer)


def extract_httpop(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """HttpOperator.execute outside a DAG, with a pagination_function; the filter counts the records."""
    operator = http_operator(spec)
    with timer.section():
        rows = operator.execute({})
    return timer.result(rows=rows)


def dlt_source(spec: dict[str, Any], write_disposition: str = "append") -> Any:
    """dlt's rest_api source over the events list, with its Link-header paginator."""
    from dlt.sources.rest_api import rest_api_source

    return rest_api_source(
        {
            "client": {
                "base_url": spec["base_url"] + "/",
                "headers": {"client-id": spec["client_id"], "client-secret": spec["client_secret"]},
                "paginator": {"type": "header_link"},
            },
            "resources": [
                {
                    "name": "events",
                    "primary_key": "id",
                    "write_disposition": write_disposition,
                    "endpoint": {
                        "path": f"pixels/{spec['pixel_id']}/events",
                        "params": window_params(spec),
                        "data_selector": "$",
                    },
                }
            ],
        },
        name="prisjakt",
    )


def extract_dlt(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """Iterate dlt's rest_api source (its extract step without a pipeline), counting records."""
    source = dlt_source(spec)
    rows = 0
    with timer.section():
        for item in source:
            rows += len(item) if isinstance(item, list) else 1
    return timer.result(rows=rows)


# -- end-to-end export ------------------------------------------------------------------------------


def local_folder_operator(spec: dict[str, Any], root: str, **kwargs: Any) -> Any:
    """Our export loop into a local folder: the file operators' base with the package's LocalFolderSink."""
    from airflow_provider_prisjakt.export.sinks.object_store import LocalFolderSink
    from airflow_provider_prisjakt.transfers.base import PrisjaktObjectStoreExportOperator

    class LocalFolderExportOperator(PrisjaktObjectStoreExportOperator):
        def build_sink(self, request: Any, extracted_at: datetime, spool_dir: str) -> LocalFolderSink:
            return LocalFolderSink(root=root, prefix="export", **self.sink_options(request, extracted_at, spool_dir))

    return LocalFolderExportOperator(
        task_id="export", pixel_id=spec["pixel_id"], start=spec["from"], end=spec["to"], **kwargs
    )


def export_ours(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """Our operator's execute() outside a DAG, into the requested destination."""
    destination = spec["destination"]
    common = {"task_id": "export", "pixel_id": spec["pixel_id"], "start": spec["from"], "end": spec["to"]}
    if destination in ("jsonl", "parquet"):
        options = (
            {"file_format": "jsonl", "compression": "gzip"} if destination == "jsonl" else {"file_format": "parquet"}
        )
        operator = local_folder_operator(spec, spec["out_dir"], **options)
    elif destination == "s3":
        from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator

        operator = PrisjaktToS3Operator(
            s3_bucket=spec["bucket"],
            s3_key="ours/events",
            aws_conn_id="bench_aws",
            file_format="jsonl",
            compression="gzip",
            **common,
        )
    elif destination == "postgres":
        from airflow_provider_prisjakt.transfers.prisjakt_to_sql import PrisjaktToSqlOperator

        operator = PrisjaktToSqlOperator(
            conn_id="bench_pg", table=spec["table"], write_disposition="merge", create_table=True, **common
        )
    else:
        raise ValueError(destination)
    operator.hook.settings  # noqa: B018
    with timer.section():
        summary = operator.execute({})
    output = folder_bytes(spec["out_dir"]) if destination in ("jsonl", "parquet") else None
    return timer.result(rows=summary["rows"], output_bytes=output, requests=summary.get("requests"))


def dlt_export(spec: dict[str, Any]) -> tuple[Any, Any, str | None]:
    """The dlt pipeline, the rest_api source and the loader file format of an export into ``destination``."""
    import dlt

    destination = spec["destination"]
    write_disposition = "merge" if destination == "postgres" else "append"
    source = dlt_source(spec, write_disposition)
    if destination in ("jsonl", "parquet"):
        target = dlt.destinations.filesystem(bucket_url="file://" + spec["out_dir"])
        file_format = destination
    elif destination == "s3":
        target = dlt.destinations.filesystem(
            bucket_url=f"s3://{spec['bucket']}/dlt",
            credentials={
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
                "endpoint_url": spec["s3_endpoint"],
                "region_name": "us-east-1",
            },
        )
        file_format = "jsonl"
    elif destination == "postgres":
        target = dlt.destinations.postgres(credentials=spec["pg_dsn"])
        file_format = None
    else:
        raise ValueError(destination)
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{destination}",
        destination=target,
        dataset_name=spec.get("dataset", "prisjakt_dlt"),
        pipelines_dir=spec["work_dir"],
    )
    return pipeline, source, file_format


def dlt_result(spec: dict[str, Any], pipeline: Any, timer: Timer) -> dict[str, Any]:
    """Rows dlt normalized, and the bytes of the ``events`` table folder for local files."""
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("events", 0)
    output = None
    if spec["destination"] in ("jsonl", "parquet"):
        output = folder_bytes(os.path.join(spec["out_dir"], spec.get("dataset", "prisjakt_dlt"), "events"))
    return timer.result(rows=rows, output_bytes=output)


def export_dlt(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """A dlt pipeline from rest_api into filesystem (local or S3) or postgres."""
    pipeline, source, file_format = dlt_export(spec)
    with timer.section():
        info = pipeline.run(source, loader_file_format=file_format)
    info.raise_on_failed_jobs()
    return dlt_result(spec, pipeline, timer)


def export_dlt_in_airflow(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """
    The same pipeline inside an Airflow task, as dlt's Airflow guide runs it: a ``PythonOperator``
    whose callable calls ``pipeline.run``. Its ``execute()`` runs outside a DAG, as ours does.
    """
    from airflow.providers.standard.operators.python import PythonOperator

    pipeline, source, file_format = dlt_export(spec)

    def load_events() -> None:
        pipeline.run(source, loader_file_format=file_format).raise_on_failed_jobs()

    operator = PythonOperator(task_id="dlt_events", python_callable=load_events)
    with timer.section():
        operator.execute(context={})
    return dlt_result(spec, pipeline, timer)


# -- rate limit: real windows ----------------------------------------------------------------------


def ratelimit_run(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """Export every page under a small budget; report wall time, rows and the error, if any."""
    tool = spec["tool"]
    rows, error = 0, None
    if tool == "ours":
        operator = local_folder_operator(spec, spec["out_dir"], compression="gzip")
        operator.hook.settings  # noqa: B018
        go: Callable[[], int] = lambda: operator.execute({})["rows"]  # noqa: E731
    elif tool == "dlt":
        import dlt

        pipeline = dlt.pipeline(
            pipeline_name="bench_ratelimit",
            destination=dlt.destinations.filesystem(bucket_url="file://" + spec["out_dir"]),
            dataset_name="prisjakt_dlt",
            pipelines_dir=spec["work_dir"],
        )
        source = dlt_source(spec)

        def go() -> int:
            pipeline.run(source, loader_file_format="jsonl")
            return pipeline.last_trace.last_normalize_info.row_counts.get("events", 0)

    else:
        http = http_operator(spec, **http_retry_kwargs(tool))
        go = lambda: http.execute({})  # noqa: E731
    with timer.section():
        try:
            rows = go()
        except Exception as err:  # the failure is the measurement
            error = f"{type(err).__name__}: {str(err)[:160]}"
    return timer.result(rows=rows, error=error)


def http_retry_kwargs(tool: str) -> dict[str, Any]:
    """``httpop_retry``: the retry_args of HttpHook.run_with_advanced_retry's own docstring example."""
    if tool != "httpop_retry":
        return {}
    import tenacity

    return {
        "retry_args": {
            "wait": tenacity.wait_exponential(),
            "stop": tenacity.stop_after_attempt(10),
            "retry": tenacity.retry_if_exception_type(Exception),
        }
    }


# -- long reset: a 300 s window, simulated with a virtual clock ------------------------------------


class VirtualClock:
    """
    Replaces ``time.sleep`` in this process: a sleep is recorded and skipped, and once the skipped
    time carries the clock past the sandbox's window end, the sandbox's window is reset, exactly as
    if the time had passed. The held time of a worker is then real time plus skipped sleeps.
    """

    def __init__(self, sandbox: Any, window: float) -> None:
        self.sandbox = sandbox
        self.window = window
        self.offset = 0.0
        self.sleeps: list[float] = []
        self.window_start: float | None = None
        self.seen = 0
        self._real_sleep = time.sleep

    def now(self) -> float:
        return time.monotonic() + self.offset

    def _update_window(self) -> None:
        records = self.sandbox.requests
        if self.window_start is None and len(records) > self.seen:
            self.window_start = records[self.seen].started_at + self.offset

    def sleep(self, seconds: float) -> None:
        self._update_window()
        self.sleeps.append(seconds)
        self.offset += max(0.0, seconds)
        self.advance_to(self.now())

    def advance_to(self, moment: float) -> None:
        """Let virtual time pass until ``moment``; reset the sandbox window if it ended meanwhile."""
        self._update_window()
        if self.window_start is not None and moment - self.window_start >= self.window:
            self.sandbox.reset_rate_limit()
            self.window_start = None
            self.seen = len(self.sandbox.requests)

    def skip(self, seconds: float) -> None:
        """Time passing outside the process (an Airflow retry delay): not held by a worker."""
        self._update_window()
        self.offset += seconds
        self.advance_to(self.now())


def longreset_run(spec: dict[str, Any], timer: Timer) -> dict[str, Any]:
    """
    Meet a 300 s reset: the sandbox runs in this process (only hold time and page counts are
    measured here, not speed), with a budget of ``rate_limit`` pages per 300 s window.
    """
    from collections import Counter

    # The sandbox is standard library only; the dlt venv reaches it from the checkout.
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from airflow_provider_prisjakt.testing import PrisjaktSandbox, SandboxConfig

    window = spec["rate_window"]
    sandbox = PrisjaktSandbox(
        SandboxConfig(
            shops={4242: 1},
            events_per_pixel=spec["events"],
            page_size=spec["page_size"],
            max_page_size=max(1000, spec["page_size"]),
            rate_limit=spec["rate_limit"],
            rate_window=window,
            retry_after=bool(spec.get("retry_after")),
            period_start=datetime.fromisoformat(spec["from"].replace("Z", "+00:00")),
            period_end=datetime.fromisoformat(spec["to"].replace("Z", "+00:00")),
        )
    ).start()
    spec = {
        **spec,
        "base_url": sandbox.base_url,
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "pixel_id": sandbox.pixel_ids()[0],
    }
    os.environ["AIRFLOW_CONN_PRISJAKT_DEFAULT"] = sandbox.connection_json(page_size=spec["page_size"])
    os.environ["AIRFLOW_CONN_BENCH_HTTP"] = json.dumps({"conn_type": "http", "host": sandbox.base_url})
    clock = VirtualClock(sandbox, window)
    time.sleep = clock.sleep  # type: ignore[assignment]
    tool = spec["tool"]
    attempts: list[dict[str, Any]] = []
    outcome = "incomplete"
    with timer.section():
        if tool == "ours":
            outcome, attempts = _longreset_ours(spec, sandbox, clock)
        else:
            outcome, attempts = _longreset_peer(spec, sandbox, clock, tool)
    statuses = Counter(r.status for r in sandbox.requests)
    pages = Counter(r.page_key for r in sandbox.requests if r.page_key and r.status == 200)
    sandbox.stop()
    return timer.result(
        outcome=outcome,
        attempts=attempts,
        requests=len(sandbox.requests),
        status_429=statuses.get(429, 0),
        distinct_pages=len(pages),
        pages_refetched=sum(count - 1 for count in pages.values()),
        held_s=sum(a["held_s"] for a in attempts),
        sleeps=clock.sleeps[:20],
    )


def _resume(make: Callable[[], Any], method: str, next_kwargs: dict[str, Any]) -> Any:
    """Resume a fresh operator instance, as a worker does after the triggerer fires."""
    return make().resume_execution(method, next_kwargs, {})


def _longreset_ours(spec: dict[str, Any], sandbox: Any, clock: VirtualClock) -> tuple[str, list[dict[str, Any]]]:
    """Run execute() until TaskDeferred; fire the deferral as the triggerer would, after the reset; repeat."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    attempts: list[dict[str, Any]] = []
    root = spec["out_dir"]
    spent: dict[str, float] = {}

    from airflow_provider_prisjakt.client.budget import RequestBudget

    original_observe = RequestBudget.observe

    def observe(self: Any, headers: Any) -> Any:
        status = original_observe(self, headers)
        if status is not None and status.remaining == 0 and "at" not in spent:
            spent["at"] = clock.now()  # the budget ran out: from here on the worker waits for nothing
        return status

    RequestBudget.observe = observe  # type: ignore[method-assign]

    def make() -> Any:
        return local_folder_operator(spec, root, compression="gzip", deferrable=True)

    call: Callable[[], Any] = lambda: make().execute({})  # noqa: E731
    while True:
        spent.clear()
        before = len(clock.sleeps)
        try:
            summary = call()
        except TaskDeferred as deferred:
            released = clock.now()
            attempts.append(
                {
                    "result": "deferred",
                    "held_s": round(released - spent.get("at", released), 3),
                    "slept_s": sum(clock.sleeps[before:]),
                }
            )
            kwargs = json.loads(json.dumps(deferred.kwargs or {}))
            resume = deferred.trigger.serialize()[1]["resume"]
            event = {"status": "success", "rate_limit": None, "resume": json.loads(json.dumps(resume))}
            clock.skip(spec["rate_window"])  # the triggerer waits for the reset; no worker is held
            method = deferred.method_name
            call = functools.partial(_resume, make, method, {**kwargs, "event": event})
            continue
        end = clock.now()
        attempts.append(
            {
                "result": "success",
                "held_s": round(end - spent["at"], 3) if "at" in spent else 0.0,
                "slept_s": sum(clock.sleeps[before:]),
                "rows": summary["rows"],
            }
        )
        return "completed", attempts


def _longreset_peer(
    spec: dict[str, Any], sandbox: Any, clock: VirtualClock, tool: str
) -> tuple[str, list[dict[str, Any]]]:
    """Run a peer; on failure, wait Airflow's retry delay (virtually) and run it again, up to ``tries``."""
    tries = spec.get("tries", 2)
    attempts: list[dict[str, Any]] = []
    for number in range(tries):
        since = len(sandbox.requests)
        before = len(clock.sleeps)
        start_offset = clock.offset
        error = None
        try:
            if tool.startswith("dlt"):
                import dlt

                pipeline = dlt.pipeline(
                    pipeline_name=f"bench_longreset_{number}",
                    destination=dlt.destinations.filesystem(bucket_url="file://" + spec["out_dir"]),
                    dataset_name="prisjakt_dlt",
                    pipelines_dir=spec["work_dir"],
                )
                pipeline.run(dlt_source(spec), loader_file_format="jsonl")
            else:
                http_operator(spec, **http_retry_kwargs(tool)).execute({})
        except Exception as err:
            error = f"{type(err).__name__}: {str(err)[:120]}"
        end = clock.now()
        records = sandbox.requests[since:]
        first_429 = next((i for i, r in enumerate(records) if r.status == 429), None)
        # Held after the budget ran out: from the response that spent it (the last one answered
        # before the first 429) to the end of the attempt. Every sleep comes after that 429, so the
        # virtual offset at that response is the offset at the start of the attempt.
        held = 0.0
        if first_429:
            held = end - (records[first_429 - 1].started_at + start_offset)
        attempts.append(
            {
                "result": "failed" if error else "success",
                "error": error,
                "held_s": round(held, 3),
                "slept_s": round(sum(clock.sleeps[before:]), 3),
                "pages_ok": sum(1 for r in records if r.page_key and r.status == 200),
                "status_429": sum(1 for r in records if r.status == 429),
            }
        )
        if not error:
            return "completed", attempts
        clock.skip(spec.get("retry_delay", 300.0))  # Airflow's default retry_delay; the worker is free
    return "failed", attempts


JOBS: dict[tuple[str, str], Callable[[dict[str, Any], Timer], dict[str, Any]]] = {
    ("extract", "floor"): extract_floor,
    ("extract", "ours"): extract_ours,
    ("extract", "httpop"): extract_httpop,
    ("extract", "dlt"): extract_dlt,
    ("extract", "floor_airflow"): extract_floor_in_airflow,
    ("extract", "ours_nogc"): extract_ours_without_gc,
    ("export", "ours"): export_ours,
    ("export", "dlt"): export_dlt,
    ("export", "dlt_airflow"): export_dlt_in_airflow,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    job = spec["job"]
    timer = Timer()
    if job == "ratelimit":
        result = ratelimit_run(spec, timer)
    elif job == "longreset":
        result = longreset_run(spec, timer)
    else:
        result = JOBS[(job, spec["tool"])](spec, timer)
    result["rss_end"] = rss_bytes()
    result["peak_rss"] = peak_rss_bytes()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
