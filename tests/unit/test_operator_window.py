"""How the export operators pick their window: the data interval, explicit times, lookback, and refusals."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta

import pendulum
import pytest

from airflow_provider_prisjakt.exceptions import PrisjaktConfigError
from airflow_provider_prisjakt.transfers.prisjakt_to_s3 import PrisjaktToS3Operator
from airflow_provider_prisjakt.transfers.window import parse_lookback

DAY = datetime(2026, 10, 20, tzinfo=UTC)


def operator(**kwargs: object) -> PrisjaktToS3Operator:
    return PrisjaktToS3Operator(task_id="export", pixel_id="p", s3_bucket="lake", s3_key="k/", **kwargs)  # type: ignore[arg-type]


def interval(start: datetime, end: datetime) -> dict[str, object]:
    return {"data_interval_start": pendulum.instance(start), "data_interval_end": pendulum.instance(end)}


def test_the_window_defaults_to_the_runs_data_interval() -> None:
    assert operator().resolve_window(interval(DAY, DAY + timedelta(days=1))) == (DAY, DAY + timedelta(days=1))


@pytest.mark.parametrize("context", [{}, interval(DAY, DAY)], ids=["no interval", "zero-length interval"])
def test_an_empty_window_fails_and_says_how_to_fix_it(context: dict[str, object]) -> None:
    with pytest.raises(PrisjaktConfigError) as raised:
        operator().resolve_window(context)

    message = str(raised.value)
    assert "window is empty" in message
    assert "start=" in message
    assert "CronDataIntervalTimetable" in message


def test_explicit_iso_strings_as_templates_render_them_win_over_the_interval() -> None:
    op = operator(start="2026-10-01T00:00:00+00:00", end="2026-10-02T00:00:00Z")

    assert op.resolve_window(interval(DAY, DAY + timedelta(days=1))) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 10, 2, tzinfo=UTC),
    )


@pytest.mark.parametrize("lookback", [timedelta(days=30), 30 * 86400, "P30D"])
def test_lookback_reads_that_much_before_the_start(lookback: object) -> None:
    start, end = operator(lookback=lookback).resolve_window(interval(DAY, DAY + timedelta(days=1)))

    assert start == DAY - timedelta(days=30)
    assert end == DAY + timedelta(days=1)


@pytest.mark.parametrize("lookback", ["thirty days", -5, "-P1D"])
def test_a_bad_lookback_is_refused(lookback: object) -> None:
    with pytest.raises(ValueError, match="lookback"):
        parse_lookback(lookback)  # type: ignore[arg-type]


def test_start_after_end_is_refused_naming_both() -> None:
    with pytest.raises(PrisjaktConfigError, match="start .* must be before end"):
        operator(start="2026-10-05", end="2026-10-01").resolve_window({})


def test_a_window_in_the_future_is_refused() -> None:
    future = datetime.now(UTC) + timedelta(days=2)

    with pytest.raises(PrisjaktConfigError, match="future"):
        operator(start=future.isoformat(), end=(future + timedelta(days=1)).isoformat()).resolve_window({})


def test_an_unreadable_time_names_the_parameter() -> None:
    with pytest.raises(PrisjaktConfigError, match="end must be an ISO-8601"):
        operator(start="2026-10-01", end="next tuesday").resolve_window({})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"file_format": "xlsx"}, "file_format"),
        ({"compression": "zip"}, "compression"),
        ({"resource": "orders"}, "resource"),
    ],
)
def test_a_wrong_argument_fails_when_the_dag_is_parsed(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        operator(**kwargs)


def test_file_parameters_belong_to_the_file_operators_only() -> None:
    from airflow_provider_prisjakt.export.formats import Compression, FileFormat
    from airflow_provider_prisjakt.transfers.base import PrisjaktExportOperator

    op = operator(file_format="csv", compression="gzip", max_rows_per_file=10)

    assert (op.file_format, op.compression, op.max_rows_per_file) == (FileFormat.CSV, Compression.GZIP, 10)
    assert not {"file_format", "compression", "max_rows_per_file"} & set(
        inspect.signature(PrisjaktExportOperator.__init__).parameters
    )
    with pytest.raises(ValueError, match="max_rows_per_file"):
        operator(max_rows_per_file=0)


def test_a_parquet_export_without_pyarrow_fails_when_the_dag_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else find_spec(name, *a)
    )

    with pytest.raises(ImportError, match=r"airflow-provider-prisjakt\[parquet\]"):
        operator(file_format="parquet")
    operator(file_format="csv")


def test_templated_fields_cover_every_name_and_time_a_user_would_template() -> None:
    fields = set(PrisjaktToS3Operator.template_fields)

    assert {"resource", "pixel_id", "shop_id", "start", "end", "lookback", "prisjakt_conn_id"} <= fields
    assert {"s3_bucket", "s3_key", "aws_conn_id"} <= fields


@pytest.mark.parametrize(
    "operator_class",
    [
        "prisjakt_to_s3.PrisjaktToS3Operator",
        "prisjakt_to_gcs.PrisjaktToGCSOperator",
        "prisjakt_to_sql.PrisjaktToSqlOperator",
    ],
)
def test_help_on_each_transfer_documents_every_parameter(operator_class: str) -> None:
    import importlib

    from airflow_provider_prisjakt.transfers.base import PrisjaktExportOperator

    module, name = operator_class.split(".")
    cls = getattr(importlib.import_module(f"airflow_provider_prisjakt.transfers.{module}"), name)
    own = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    shared = set(inspect.signature(PrisjaktExportOperator.__init__).parameters) - {"self", "kwargs"}
    # and those of the bases in between (the file parameters of the object-store operators)
    for base in cls.__mro__:
        if issubclass(base, PrisjaktExportOperator) and "__init__" in vars(base):
            shared |= set(inspect.signature(base.__init__).parameters) - {"self", "kwargs"}

    documented = {
        line.split(":param ", 1)[1].split(":", 1)[0] for line in cls.__doc__.splitlines() if ":param " in line
    }

    assert own | shared <= documented


@pytest.mark.parametrize("context", [{}, interval(DAY, DAY)], ids=["no interval", "zero-length interval"])
def test_the_empty_window_hint_suggests_templates_that_render_in_that_very_run(context: dict[str, object]) -> None:
    from airflow_provider_prisjakt.transfers.window import DAY_BEFORE_THE_RUN
    from airflow_provider_prisjakt.version_compat import AIRFLOW_V_3_0_PLUS

    with pytest.raises(PrisjaktConfigError) as raised:
        operator().resolve_window(context)

    start, end = DAY_BEFORE_THE_RUN
    assert f"start='{start}' and end='{end}'" in str(raised.value)
    if AIRFLOW_V_3_0_PLUS:  # a run without a logical date has no ds, but always a run_after
        assert "ds," not in start + end and "dag_run.run_after" in start + end
    # tests/integration/test_manual_window.py renders them in such a run


def test_the_first_log_line_says_the_window_includes_the_lookback(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    op = operator(lookback="P7D")
    start, end = op.resolve_window(interval(DAY, DAY + timedelta(days=1)))

    with caplog.at_level("INFO"):
        op.log_window(op.export_request(start, end))

    # Airflow 2 logs through the logging module, Airflow 3 through structlog to stdout.
    logged = "\n".join([*caplog.messages, capsys.readouterr().out])
    assert (
        "Exporting Prisjakt events of pixel p from 2026-10-13T00:00:00Z "
        "(2026-10-20T00:00:00Z minus the look-back P7D) to 2026-10-21T00:00:00Z"
    ) in logged


@pytest.mark.parametrize(
    ("lookback", "written"),
    [(timedelta(days=30), "P30D"), (timedelta(hours=6), "PT6H"), (timedelta(days=1, minutes=90), "P1DT1H30M")],
)
def test_a_lookback_is_logged_as_an_iso_8601_duration(lookback: timedelta, written: str) -> None:
    from airflow_provider_prisjakt.transfers.window import format_lookback

    assert format_lookback(lookback) == written
    assert parse_lookback(written) == lookback
