"""The embedder: one object that turns queries and passages into L2-normalised vectors.

E5-style models need `query: ` / `passage: ` prefixes; callers never add them by hand, so a
query can never be embedded as a passage by mistake.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag import offline as _offline  # noqa: F401


@dataclass
class Embedder:
    model: object  # sentence_transformers.SentenceTransformer
    model_id: str
    query_prefix: str = ""
    passage_prefix: str = ""
    batch_size: int = 32

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tokenizer = self.model.tokenizer

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
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self._tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts])

    def embed_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts], show_progress)

    def _encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)
