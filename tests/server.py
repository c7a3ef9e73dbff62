"""A real `rag serve` process for end-to-end and crash tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, log: Path | None = None,
                 cwd: Path | None = None):
        self.data_dir = data_dir
        self.cwd = cwd  # working directory of the server process (None: the caller's)
        self.port = free_port()
        self.env = {**os.environ, "RAG_DATA_DIR": str(data_dir), **(env or {})}
        self.log = log or data_dir.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> "Server":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._logfh = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rag_cli", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=self.env, stdout=self._logfh, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(self.cwd) if self.cwd is not None else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"server did not answer /health within {timeout}s:\n{self.log.read_text()[-4000:]}")

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing; what survives is what was durable."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if getattr(self, "_logfh", None):
            self._logfh.close()
            self._logfh = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
