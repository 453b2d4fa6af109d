"""
Command line: ``python -m airflow_provider_prisjakt.testing serve --port 8080``.

Prints the base URL, the client credentials and an ``AIRFLOW_CONN_PRISJAKT_DEFAULT``
line, then ``READY <base_url>`` once listening, and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from airflow_provider_prisjakt.testing.config import SandboxConfig
from airflow_provider_prisjakt.testing.server import PrisjaktSandbox


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
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--seed", type=int, default=defaults.seed)
    serve.add_argument("--events-per-pixel", type=int, default=defaults.events_per_pixel)
    serve.add_argument("--pixels", type=int, default=None, help="pixels of shop 4242")
    serve.add_argument("--page-size", type=int, default=defaults.page_size)
    serve.add_argument("--rate-limit", type=int, default=defaults.rate_limit)
    serve.add_argument("--rate-window", type=float, default=defaults.rate_window, help="seconds")
    serve.add_argument("--reset-style", choices=("duration", "epoch"), default=defaults.reset_style)
    serve.add_argument("--envelope", choices=("array", "object"), default=defaults.envelope)
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
        envelope=args.envelope,
        auth_mode=args.auth_mode,
        verbose=args.verbose,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the command line.

    :param argv: Arguments without the program name; defaults to ``sys.argv[1:]``.
    :return: Exit status.
    """
    args = build_parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sandbox = PrisjaktSandbox(config_from_args(args)).start()
    try:
        print(f"Base URL:       {sandbox.base_url}")
        print(f"Token URL:      {sandbox.token_url}")
        print(f"Port:           {sandbox.port}")
        print(f"Client id:      {sandbox.client_id}")
        print(f"Client secret:  {sandbox.client_secret}")
        print(f"Pixel ids:      {' '.join(sandbox.pixel_ids())}")
        print(f"AIRFLOW_CONN_PRISJAKT_DEFAULT='{sandbox.connection_json()}'")
        print(f"READY {sandbox.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
