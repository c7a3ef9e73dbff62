"""The embedder: one object that turns queries and passages into L2-normalised vectors.

E5-style models need `query: ` / `passage: ` prefixes; callers never add them by hand, so a
query can never be embedded as a passage by mistake.

The model runs one call at a time. Queries arriving from many request threads are combined: the
thread that gets the model embeds every query waiting at that moment in one batch, and the others
take their rows from it. Under concurrent searches this turns N forward passes of one short text
into a few passes of many (a query's vector is the same up to float rounding).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag import offline as _offline  # noqa: F401


@dataclass(eq=False)
class _Waiting:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: np.ndarray | None = None
    error: BaseException | None = None


@dataclass
class Embedder:
    model: object  # sentence_transformers.SentenceTransformer
    model_id: str
    query_prefix: str = ""
    passage_prefix: str = ""
    batch_size: int = 32

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # the model: one call at a time
        self._waiting: list[_Waiting] = []  # queries not yet embedded
        self._waiting_lock = threading.Lock()
        # Counting has a tokenizer of its own: `encode` switches padding on in the shared one while it
        # runs, and a count from another thread at that moment switched it off under it (batches
        # came back unpadded). Encoding on a tokenizer that nobody reconfigures is thread-safe.
        self._counter = copy.deepcopy(self.model.tokenizer.backend_tokenizer)
        self._counter.no_padding()
        self._counter.no_truncation()

    @classmethod
    def load(cls, folder: Path | str, *, model_id: str, query_prefix: str = "", passage_prefix: str = "",
             batch_size: int = 32) -> "Embedder":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        return cls(model, model_id, query_prefix, passage_prefix, batch_size)

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def max_content_tokens(self) -> int:
        """Room left for chunk text once special tokens and the passage prefix are added."""
        return self.max_seq_length - self.count_tokens(self.passage_prefix) - 2

    def count_tokens(self, text: str) -> int:
        """Exact count in the embedder's own tokens, without special tokens."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False)]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        mine = _Waiting([self.query_prefix + t for t in texts])
        with self._waiting_lock:
            self._waiting.append(mine)
        with self._lock:
            if not mine.done.is_set():  # no one took it yet: embed everything waiting, this one included
                with self._waiting_lock:
                    batch, self._waiting = self._waiting, []
                self._embed_waiting(batch)
        if mine.error is not None:
            raise mine.error
        return mine.vectors

    def _embed_waiting(self, batch: list[_Waiting]) -> None:
        """Runs with the model lock held; every request in `batch` is done when this returns."""
        try:
            vecs = self._encode_locked([t for w in batch for t in w.texts])
            start = 0
            for w in batch:
                w.vectors = vecs[start:start + len(w.texts)]
                start += len(w.texts)
        except BaseException as exc:  # every waiter sees the failure, not only the thread that ran it
            for w in batch:
                w.error = exc
            raise
        finally:
            for w in batch:
                w.done.set()

    def embed_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts], show_progress)

    def _encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return self._encode_locked(texts, show_progress)

    def _encode_locked(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)
