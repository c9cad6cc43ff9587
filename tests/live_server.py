"""A real ASGI server (uvicorn) in a subprocess on 127.0.0.1, for the HTTP tests of the Django views."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.aio.procs import wait_until

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class UvicornServer:
    """``python -m uvicorn <app>`` with its own environment; ``url`` once it accepts connections."""

    def __init__(self, app: str, *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port),
             "--no-access-log", "--lifespan", "off"],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: self.proc.poll() is not None or _accepts(self.port), 60, f"uvicorn never listened:\n{self.output}"
            )
            if self.proc.poll() is not None:
                raise AssertionError(f"uvicorn exited with {self.proc.returncode}:\n{self.output}")
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
