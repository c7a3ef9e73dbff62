"""Runs a parser worker (`python -m ingest.parsers.<worker> PATH ...`) in a limited child process.

Why a process: document libraries (pypdf, openpyxl, python-docx, ...) have had denial-of-service
advisories (infinite loops, decompression bombs, quadratic parsing). The child limits its own
address space, CPU time and output size (`limits.set_limits`) before it imports any of them; the
parent kills its whole process group at the wall-clock limit. The child writes one JSON object to
stdout: ``{"ok": true, ...}`` or ``{"ok": false, "code": ..., "detail": ...}``.

A limit hit becomes `limit_error(detail)`, a crash or an unreadable result `malformed(detail)`;
the caller maps a refusal (``ok: false``) to its own error codes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest.parsers.limits import EXIT_MEMORY
from rag.errors import IngestError

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 120
    memory_mb: int = 1024
    wall_seconds: float = 180


def _worker_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": _PROJECT_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
    }


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()


def run_worker(module: str, data: bytes, args: list[str], limits: Limits, *,
               limit_error: Callable[[str], IngestError], malformed: Callable[[str], IngestError]) -> dict:
    """The worker's JSON result for `data` (written to a private temporary file it reads)."""
    with tempfile.TemporaryDirectory(prefix="rag-parse-") as tmp:
        src = os.path.join(tmp, "input")
        with open(src, "wb") as fh:
            fh.write(data)
        out_path = os.path.join(tmp, "out.json")
        cmd = [sys.executable, "-s", "-m", module, src, *args,  # -s: no user site-packages in the sandbox
               "--memory-mb", str(limits.memory_mb), "--cpu-seconds", str(limits.cpu_seconds)]
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL, cwd=tmp,
                                    env=_worker_env(), start_new_session=True, close_fds=True)
            try:
                rc = proc.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise limit_error(f"wall-clock limit of {limits.wall_seconds:g} s") from None
            finally:
                if proc.poll() is None:  # interrupted (KeyboardInterrupt, cancellation)
                    _kill_group(proc)
        if rc < 0:
            sig = -rc
            if sig == signal.SIGXCPU or sig == signal.SIGKILL:
                raise limit_error(f"CPU time limit of {limits.cpu_seconds} s")
            if sig == signal.SIGXFSZ:
                raise limit_error("output size limit")
            raise malformed(f"the parser crashed (signal {sig})")
        if rc == EXIT_MEMORY:
            raise limit_error(f"memory limit of {limits.memory_mb} MB")
        if rc != 0:
            # An uncaught error in the worker; MemoryError while starting up also lands here.
            raise malformed(f"the parser failed (exit status {rc})")
        if os.path.getsize(out_path) == 0:
            raise malformed("the parser produced no result")
        try:
            with open(out_path, "rb") as fh:
                result = json.loads(fh.read())
        except (ValueError, UnicodeDecodeError):
            raise malformed("the parser produced an unreadable result") from None
    if not isinstance(result, dict):
        raise malformed("the parser produced an unreadable result")
    return result


def limits_of(settings) -> Limits:
    """The parse limits from a `rag.settings.Settings` (None: the defaults)."""
    if settings is None:
        return Limits()
    return Limits(cpu_seconds=settings.parse_cpu_seconds, memory_mb=settings.parse_memory_mb,
                  wall_seconds=settings.parse_wall_seconds)
