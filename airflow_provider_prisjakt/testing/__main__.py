"""
Command line: ``python -m airflow_provider_prisjakt.testing serve [--port 8765]``.

Prints the base URL, the client credentials, the shops with their pixels, the
period that holds data and an ``AIRFLOW_CONN_PRISJAKT_DEFAULT`` line, then
``READY <base_url>`` once listening, and serves until SIGINT or SIGTERM.

The default port, :data:`DEFAULT_PORT`, is one no Airflow component uses by
default (the api-server and webserver take 8080, the log servers 8793 and 8794,
the scheduler's health check 8974). A port already in use is refused with one
line on stderr and exit status 2; ``--port 0`` picks a free port.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import get_args

from airflow_provider_prisjakt.testing.config import (
    Envelope,
    EventFields,
    ResetStyle,
    RetryAfterForm,
    SandboxConfig,
    SummaryShape,
    WindowBounds,
)
from airflow_provider_prisjakt.testing.seed import format_time
from airflow_provider_prisjakt.testing.server import PrisjaktSandbox

#: Port ``serve`` listens on unless told otherwise.
DEFAULT_PORT = 8765
#: Exit status of a command line that cannot serve as asked (e.g. the port is taken).
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """
    Build the argument parser.

    :return: The parser with the ``serve`` sub-command.
    """
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_prisjakt.testing",
        description="Run the Prisjakt Click and Conversion API sandbox.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the sandbox API until interrupted")
    defaults = SandboxConfig()
    serve.add_argument("--host", default=defaults.host)
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT} (no Airflow port); 0 picks a free port"
    )
    serve.add_argument("--seed", type=int, default=defaults.seed)
    serve.add_argument("--events-per-pixel", type=int, default=defaults.events_per_pixel)
    serve.add_argument("--pixels", type=int, default=None, help="pixels of shop 4242")
    serve.add_argument("--page-size", type=int, default=defaults.page_size)
    serve.add_argument("--rate-limit", type=int, default=defaults.rate_limit)
    serve.add_argument("--rate-window", type=float, default=defaults.rate_window, help="seconds")
    serve.add_argument("--reset-style", choices=get_args(ResetStyle), default=defaults.reset_style)
    serve.add_argument("--retry-after", choices=get_args(RetryAfterForm), default=defaults.retry_after_form)
    serve.add_argument("--envelope", choices=get_args(Envelope), default=defaults.envelope)
    serve.add_argument("--window-bounds", choices=get_args(WindowBounds), default=defaults.window_bounds)
    serve.add_argument("--event-fields", choices=get_args(EventFields), default=defaults.event_fields)
    serve.add_argument("--summary-shape", choices=get_args(SummaryShape), default=defaults.summary_shape)
    serve.add_argument("--gzip", action="store_true", help="gzip bodies for clients that accept it")
    serve.add_argument("--latency-ms", type=float, default=defaults.latency_ms, help="delay before each response")
    serve.add_argument("--auth-mode", choices=("headers", "oauth2", "both"), default=defaults.auth_mode)
    serve.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """
    Turn parsed arguments into a configuration.

    :param args: Parsed ``serve`` arguments.
    :return: The sandbox configuration.
    """
    shops = dict(SandboxConfig().shops)
    if args.pixels is not None:
        shops[4242] = args.pixels
    return SandboxConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        shops=shops,
        events_per_pixel=args.events_per_pixel,
        page_size=args.page_size,
        max_page_size=max(args.page_size, SandboxConfig().max_page_size),
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        reset_style=args.reset_style,
        retry_after=args.retry_after,
        envelope=args.envelope,
        window_bounds=args.window_bounds,
        event_fields=args.event_fields,
        summary_shape=args.summary_shape,
        gzip=args.gzip,
        latency_ms=args.latency_ms,
        auth_mode=args.auth_mode,
        verbose=args.verbose,
    )


def banner(sandbox: PrisjaktSandbox) -> list[str]:
    """
    Describe a running sandbox: where it listens, who may call it and what data it holds.

    :param sandbox: The started sandbox.
    :return: The lines to print, without ``READY``.
    """
    config = sandbox.config
    shops = sandbox.pixels_by_shop()
    lines = [
        f"Base URL:       {sandbox.base_url}",
        f"Token URL:      {sandbox.token_url}",
        f"Port:           {sandbox.port}",
        f"Client id:      {sandbox.client_id}",
        f"Client secret:  {sandbox.client_secret}",
        "Shops:          " + ", ".join(f"{shop} ({len(pixels)} pixel(s))" for shop, pixels in shops.items()),
        "Pixels:",
        *(f"  {pixel}  shop {shop}" for shop, pixels in shops.items() for pixel in pixels),
        f"Data:           {config.events_per_pixel} events per pixel from"
        f" {format_time(int(config.period_start.timestamp()))} to {format_time(int(config.period_end.timestamp()))}"
        " (end exclusive); no events outside it",
        f"AIRFLOW_CONN_PRISJAKT_DEFAULT='{sandbox.connection_json()}'",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line.

    :param argv: Arguments without the program name; defaults to ``sys.argv[1:]``.
    :return: Exit status: 0 after a signal, :data:`EXIT_USAGE` when the port is taken.
    """
    args = build_parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        sandbox = PrisjaktSandbox(config_from_args(args)).start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(
            f"error: port {args.port} on {args.host} is already in use; choose another with --port N"
            " (--port 0 picks a free one)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for line in banner(sandbox):
            print(line)
        print(f"READY {sandbox.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
