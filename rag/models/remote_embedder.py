"""The embedder behind an OpenAI-compatible `/v1/embeddings` server (`RAG_EMBEDDER_URL`).

`RemoteEmbedder` has what callers use of `rag.models.embedder.Embedder`: `embed_queries`,
`embed_passages`, `dim`, `model_id`, the prefixes, `batch_size`, `max_seq_length`,
`max_content_tokens` and `count_tokens`. The vectors come from the server (the model name sent is
`RAG_EMBEDDER`) and are L2-normalised here, whatever the server does.

Token counts stay local: chunking counts every sentence in the embedder's tokens, one HTTP call per
count would be far too slow, and the embeddings API has no tokenizer. So `RAG_EMBEDDER` must still
name a prepared registry model or a local folder: only its `tokenizer.json` and its sequence length
are read (no weights loaded). The server must serve that same model; the dimension is read from
the server's first answer at connect.

Failures (unreachable server, no answer within the timeout, 5xx) raise `embedder_unavailable` (503).
Calls are independent HTTP requests, so concurrent callers need no lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from rag.errors import ModelError
from rag.models.openai_runtime import public_url


class EmbedderUnavailable(ModelError):
    code = "embedder_unavailable"
    status = 503


def max_seq_length_of(folder: Path) -> int:
    """sentence-transformers' limit for the folder, else the tokenizer's, else BERT's 512."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        path = folder / name
        if path.is_file():
            value = json.loads(path.read_text()).get(key)
            if isinstance(value, int) and 0 < value < 1_000_000:
                return value
    return 512


@dataclass(eq=False)
class RemoteEmbedder:
    http: httpx.Client
    url: str  # base URL, e.g. http://host:8080/v1
    model_id: str
    counter: object  # tokenizers.Tokenizer, padding and truncation off
    max_seq_length: int
    query_prefix: str = ""
    passage_prefix: str = ""
    batch_size: int = 32
    dim: int = field(default=0)
    runtime = "openai"

    @classmethod
    def connect(cls, url: str, *, model_id: str, folder: Path, api_key: str = "", query_prefix: str = "",
                passage_prefix: str = "", batch_size: int = 32, timeout_s: float = 60.0) -> "RemoteEmbedder":
        from tokenizers import Tokenizer

        tok = Path(folder) / "tokenizer.json"
        if not tok.is_file():
            raise ModelError(f"{folder} has no tokenizer.json: the remote embedder counts tokens locally "
                             "(set RAG_EMBEDDER to the served model's registry name or folder)", code="model_not_found")
        counter = Tokenizer.from_file(str(tok))
        counter.no_padding()
        counter.no_truncation()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)))
        emb = cls(http, url.rstrip("/"), model_id, counter, max_seq_length_of(Path(folder)), query_prefix,
                  passage_prefix, batch_size)
        emb.dim = int(emb._post([query_prefix + "dimension probe"]).shape[1])
        return emb

    @property
    def server(self) -> str:
        return public_url(self.url)

    @property
    def max_content_tokens(self) -> int:
        """Room left for chunk text once special tokens and the passage prefix are added."""
        return self.max_seq_length - self.count_tokens(self.passage_prefix) - 2

    def warm_up(self) -> None:
        """Nothing to build ahead of use (the counter is loaded with the folder)."""

    def count_tokens(self, text: str) -> int:
        """Exact count in the embedder's own tokens, without special tokens."""
        return len(self.counter.encode(text, add_special_tokens=False).ids)

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self.counter.encode_batch(list(texts), add_special_tokens=False)]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts])

    def embed_passages(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts])

    def close(self) -> None:
        self.http.close()

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._post(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)

    def _post(self, texts: list[str]) -> np.ndarray:
        """One `/embeddings` request; rows in input order, L2-normalised."""
        try:
            r = self.http.post(self.url + "/embeddings", json={"model": self.model_id, "input": texts,
                                                                "encoding_format": "float"})
        except httpx.HTTPError as exc:
            raise EmbedderUnavailable(f"the embedder server {self.server} is unavailable: {exc}") from exc
        if r.status_code >= 500:
            raise EmbedderUnavailable(f"the embedder server {self.server} answered HTTP {r.status_code}")
        if r.status_code >= 400:
            raise ModelError(f"the embedder server refused the request: HTTP {r.status_code}: {r.text[:300]}",
                             code="embedding_failed", status=502)
        rows = sorted(r.json()["data"], key=lambda d: d["index"])
        vecs = np.asarray([d["embedding"] for d in rows], dtype=np.float32)
        if vecs.shape[0] != len(texts):
            raise ModelError(f"the embedder server returned {vecs.shape[0]} vectors for {len(texts)} texts",
                             code="embedding_failed", status=502)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)
