"""Local stand-ins for cloud storage, started as subprocesses: moto_server (S3) and gcp-storage-emulator (GCS)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HOST = "127.0.0.1"
START_DEADLINE_SECONDS = 30.0
STOP_DEADLINE_SECONDS = 10.0


@dataclass
class Service:
    """
    A local service running as a subprocess.

    :param name: what it is, for messages.
    :param port: the TCP port it listens on, on 127.0.0.1.
    :param process: the subprocess.
    :param log_path: where its stdout and stderr go.
    """

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the service printed, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the process (kill it if it does not exit in time) and remove its log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_path.unlink(missing_ok=True)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> Path | None:
    """Return the console script ``name`` installed beside this Python, if there is one."""
    candidate = Path(sys.executable).parent / name
    return candidate if candidate.exists() else None


def require_binary(name: str, package: str) -> Path:
    """
    Return the console script ``name``; skip the test without it, but fail under ``CI=true``.

    :param package: what to install to get it, for the message.
    """
    binary = find_binary(name)
    if binary is not None:
        return binary
    reason = f"{name} is not installed beside {sys.executable}; install {package} to run these tests"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    print(reason)
    pytest.skip(reason)


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


def start_service(name: str, argv: list[str], port: int, deadline: float = START_DEADLINE_SECONDS) -> Service:
    """
    Start ``argv`` and return once it answers HTTP on ``port``.

    :raises RuntimeError: when the process exits or does not answer before ``deadline`` seconds,
        with the end of its output.
    """
    log_file = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log_file.close()
    service = Service(name, port, process, Path(log_file.name))
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        if process.poll() is not None:
            tail = service.log_tail()
            service.stop()
            raise RuntimeError(f"{name} exited with code {process.returncode} before answering:\n{tail}")
        if _answers_http(service.url):
            return service
        time.sleep(0.05)
    tail = service.log_tail()
    service.stop()
    raise RuntimeError(f"{name} did not answer on {service.url} within {deadline:.0f} s:\n{tail}")


def start_moto_server() -> Service:
    """Start ``moto_server`` (S3 and the rest of AWS) on a free port."""
    binary = require_binary("moto_server", "moto[server]")
    port = free_port()
    return start_service("moto_server", [str(binary), "-H", HOST, "-p", str(port)], port)


def start_gcs_emulator() -> Service:
    """Start ``gcp-storage-emulator`` in memory on a free port."""
    binary = require_binary("gcp-storage-emulator", "gcp-storage-emulator")
    port = free_port()
    argv = [str(binary), "start", "--host", HOST, "--port", str(port), "--in-memory", "--quiet"]
    return start_service("gcp-storage-emulator", argv, port)
