"""Body shapes the reference leaves open: list envelopes and purchase summaries (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_prisjakt.testing.config import SandboxConfig

#: The ``errors`` member of ``envelope="data_and_errors"`` pages.
PARTIAL_ERRORS: tuple[dict[str, str], ...] = (
    {"code": "partial_result", "message": "Some events could not be enriched"},
)


def list_body(config: SandboxConfig, items: list[dict[str, Any]], kind: str) -> Any:
    """
    Wrap one page of a list endpoint in the configured envelope.

    :param config: Live configuration (``envelope``, ``envelope_member``).
    :param items: The page's records.
    :param kind: What the list holds (``"events"``, ``"pixels"``): the inner member of
        ``envelope="nested"``.
    :return: The JSON-ready body.
    """
    envelope = config.envelope
    if envelope == "array":
        return items
    listed: Any = items
    if envelope == "nested":
        listed = {kind: items}
    elif envelope == "null_when_empty" and not items:
        listed = None
    body: dict[str, Any] = {config.envelope_member: listed, "meta": {"count": len(items)}}
    if envelope == "data_and_errors":
        body["errors"] = [dict(error) for error in PARTIAL_ERRORS]
    return body


def errors_body(config: SandboxConfig, message: str) -> dict[str, Any]:
    """
    Build an errors-only envelope: a 200-style body that carries no data.

    :param config: Live configuration (``envelope_member``).
    :param message: The error's message.
    :return: ``{member: None, "errors": [{"code", "message"}]}``.
    """
    return {config.envelope_member: None, "errors": [{"code": "upstream_error", "message": message}]}


def summary_body(config: SandboxConfig, start: str, end: str, entries: list[dict[str, Any]]) -> Any:
    """
    Render a purchase summary in the configured shape.

    :param config: Live configuration (``summary_shape`` and the member-name knobs).
    :param start: ``from`` as echoed back.
    :param end: ``to`` as echoed back.
    :param entries: ``[{"currency", "count", "total_amount"}]`` sorted by currency.
    :return: The JSON-ready body.
    """
    count, amount = config.summary_count_member, config.summary_amount_member
    if config.summary_shape == "by_currency":
        return {e["currency"]: {count: e["count"], amount: e["total_amount"]} for e in entries}
    rows = [{"currency": e["currency"], count: e["count"], amount: e["total_amount"]} for e in entries]
    if config.summary_shape == "bare_list":
        return rows
    member = "currencies" if config.summary_shape == "currencies" else config.summary_member
    return {"from": start, "to": end, member: rows}
