"""Passage embedding for ingestion in a child process, at a lower CPU priority.

Why: in one process, ingestion and searches share the embedder. A search's query (one short
text, milliseconds) waited behind a whole passage batch (32 chunks, hundreds of milliseconds)
because the model is not safe to run from two threads at once, and when both ran, torch's
threads fought over the same cores. A child process has its own model and thread pool, and its
`nice` value lets the kernel run the server's searches and answers first whenever both want a
core; ingestion takes what is left.

The protocol is pickled messages over the child's stdin/stdout: the parent sends a list of
passages, the child answers ("ok", vectors) or ("error", text). The child is started on first use
and again after it dies; a batch the child died on is sent once more to a new child (embedding is
pure), and only a second death fails the job (`EmbedProcessError`).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.errors import RagError


class EmbedProcessError(RagError):
    code = "embed_process_failed"
    status = 500


@dataclass(frozen=True)
class ChildSpec:
    folder: str
    model_id: str
    passage_prefix: str
    batch_size: int
    threads: int
    niceness: int
    precision: str = "auto"  # the parent's `Embedder.precision`, so both embed alike (see rag.models.embedder)


class EmbedProcess:
    """`embed_passages` of an `Embedder`, run by a child process (see the module docstring)."""

    def __init__(self, spec: ChildSpec, dim: int):
        self.spec = spec
        self.dim = dim
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            for attempt in (1, 2):
                proc = self._ensure()
                try:
                    pickle.dump(list(texts), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                    proc.stdin.flush()
                    kind, payload = pickle.load(proc.stdout)
                    break
                except (EOFError, OSError, pickle.UnpicklingError) as exc:
                    self._reap()
                    if attempt == 2:
                        raise EmbedProcessError(f"the embedding process ended twice during a batch "
                                                f"({type(exc).__name__})") from exc
        if kind != "ok":
            raise EmbedProcessError(f"the embedding process failed: {payload}")
        return payload

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self) -> None:
        with self._lock:
            self._ensure()

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                try:
                    pickle.dump(None, self._proc.stdin)
                    self._proc.stdin.flush()
                    self._proc.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    self._proc.kill()
            self._reap()

    def _ensure(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._reap()
        proc = subprocess.Popen([sys.executable, "-m", "rag.models.embed_process"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        pickle.dump(self.spec, proc.stdin)
        proc.stdin.flush()
        try:
            kind, payload = pickle.load(proc.stdout)
        except EOFError:
            proc.wait(10)
            raise EmbedProcessError(f"the embedding process did not start (exit code {proc.returncode})") from None
        if kind != "ready":
            proc.kill()
            raise EmbedProcessError(f"the embedding process did not start: {payload}")
        self._proc = proc
        return proc

    def _reap(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(10)
            for stream in (self._proc.stdin, self._proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self._proc = None


def _serve(inp, out) -> None:
    spec: ChildSpec = pickle.load(inp)
    try:
        from rag.malloc import pin_mmap_threshold

        pin_mmap_threshold()
        os.nice(spec.niceness)
        import torch

        from rag.models.embedder import Embedder

        torch.set_num_threads(spec.threads if spec.threads > 0 else (os.cpu_count() or 1))
        embedder = Embedder.load(Path(spec.folder), model_id=spec.model_id, passage_prefix=spec.passage_prefix,
                                 batch_size=spec.batch_size, precision=spec.precision)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        pickle.dump(("error", f"{type(exc).__name__}: {exc}"), out)
        out.flush()
        return
    pickle.dump(("ready", embedder.dim), out)
    out.flush()
    while (texts := pickle.load(inp)) is not None:
        try:
            reply = ("ok", embedder.embed_passages(texts))
        except Exception as exc:  # noqa: BLE001 - one bad batch fails its job, not the process
            reply = ("error", f"{type(exc).__name__}: {exc}")
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


if __name__ == "__main__":
    # stdout carries the protocol: anything a library prints goes to stderr instead.
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, protocol_out)
