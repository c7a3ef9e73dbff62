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

    @property
    def admin_key(self) -> str:
        """The admin key the server wrote at its first start (auth is on by default)."""
        return (self.data_dir / "admin.key").read_text().strip()

    def client(self, timeout: float = 60, *, key: str | None = None) -> httpx.Client:
        """A client holding the admin key (or `key`)."""
        return httpx.Client(base_url=self.url, timeout=timeout,
                            headers={"Authorization": f"Bearer {key or self.admin_key}"})

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


def local_client(app, data_dir: Path, **kwargs):
    """An in-process TestClient that talks to the app as a local client would: Host 127.0.0.1 (the
    default allow-list) and, once the app has started (`with ...`), the admin key of `data_dir`."""
    from fastapi.testclient import TestClient

    class _Client(TestClient):
        def __enter__(self):
            super().__enter__()
            key = data_dir / "admin.key"
            if key.exists():
                self.headers["Authorization"] = f"Bearer {key.read_text().strip()}"
            return self

    return _Client(app, base_url="http://127.0.0.1", **kwargs)
