"""The embedder: one object that turns queries and passages into L2-normalised vectors.

E5-style models need `query: ` / `passage: ` prefixes; callers never add them by hand, so a
query can never be embedded as a passage by mistake.

The model runs one call at a time. Queries arriving from many request threads are combined: the
thread that gets the model embeds every query waiting at that moment in one batch, and the others
take their rows from it. Under concurrent searches this turns N forward passes of one short text
into a few passes of many (a query's vector is the same up to float rounding).

Precision: on a CPU with native bfloat16 (AVX512-BF16 or AMX) the transformer runs in bf16 (its
weights cast once at load; pooling and normalisation stay fp32). Measured with `rag bench embed` on
multilingual-e5-small: cosine to the fp32 vectors >= 0.9999 on real chunks, and 2.5-4x the fp32
rate on one thread (#14); `torch.autocast` was as close (>= 0.99999) but ~20% slower (it casts
around every op). Elsewhere bf16 is emulated and slower, so `auto` keeps fp32 there.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np

from rag import offline as _offline  # noqa: F401

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "bf16", "auto"]


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); Linux flags, else no."""
    from rag.models.cpu import read_cpu

    return read_cpu().native_bf16


def resolve_precision(precision: str) -> Literal["fp32", "bf16"]:
    """`auto` is bf16 only where it is native: emulated bf16 is slower than fp32."""
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown embedder precision {precision!r}: use fp32, bf16 or auto")
    return precision


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
    precision: Literal["fp32", "bf16"] = "fp32"  # what `model` runs in (`load` casts it; `auto` resolved)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"embedder precision must be fp32 or bf16 once loaded, not {self.precision!r}")
        self._lock = threading.Lock()  # the model: one call at a time
        self._waiting: list[_Waiting] = []  # queries not yet embedded
        self._waiting_lock = threading.Lock()
        self._counter_copy = None
        self._counter_lock = threading.Lock()

    @classmethod
    def load(cls, folder: Path | str, *, model_id: str, query_prefix: str = "", passage_prefix: str = "",
             batch_size: int = 32, precision: Precision = "auto") -> "Embedder":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        precision = resolve_precision(precision)
        if precision == "bf16":
            to_bf16(model)
        return cls(model, model_id, query_prefix, passage_prefix, batch_size, precision)

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

    @property
    def _counter(self):
        """Counting has a tokenizer of its own: `encode` switches padding on in the shared one while it
        runs, and a count from another thread at that moment switched it off under it (batches came back
        unpadded). Encoding on a tokenizer that nobody reconfigures is thread-safe. The copy (~1 s for
        XLM-R's 250k pieces) is made at first use, or by `warm_up` after start, not while a restart waits."""
        if self._counter_copy is None:
            with self._counter_lock:
                if self._counter_copy is None:
                    counter = copy.deepcopy(self.model.tokenizer.backend_tokenizer)
                    counter.no_padding()
                    counter.no_truncation()
                    self._counter_copy = counter
        return self._counter_copy

    def warm_up(self) -> None:
        """Builds what first use would otherwise wait for (the counting tokenizer)."""
        self._counter  # noqa: B018

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


def to_bf16(model) -> None:
    """Casts a SentenceTransformer's transformer to bf16 in place; its token states go back to fp32
    before pooling (a mean over up to 512 tokens summed in bf16 would lose digits)."""
    import torch

    model[0].auto_model.to(torch.bfloat16)

    def fp32_states(_module, args):
        (features,) = args
        return ({**features, "token_embeddings": features["token_embeddings"].float()},)

    model[1].register_forward_pre_hook(fp32_states)


class PaddedEncoder:
    """A transformer's mean-pooled, L2-normalised vectors, over batches sorted by exact token count.

    Why, beside `SentenceTransformer.encode`: `rag bench embed` compares runtimes on the same texts,
    and here `forward(input_ids, attention_mask) -> hidden states` can be any of them (a bf16 or
    int8 copy, ONNX Runtime) while tokenising, padding and fp32 pooling stay one code. (Sorting by
    tokens rather than characters pads less only when Chinese and English share a batch.)
    """

    def __init__(self, tokenizer, forward: Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"], pad_id: int):
        self._tokenizer = tokenizer  # a `tokenizers.Tokenizer` that truncates and never pads
        self._forward = forward
        self._pad_id = pad_id

    @classmethod
    def from_embedder(cls, embedder: "Embedder", model) -> "PaddedEncoder":
        """`model`: a Hugging Face transformer module, or a `forward` callable."""
        tok = copy.deepcopy(embedder.model.tokenizer.backend_tokenizer)
        tok.no_padding()
        tok.enable_truncation(embedder.max_seq_length)
        if hasattr(model, "parameters"):
            module = model

            def model(ids, mask):
                return module(input_ids=ids, attention_mask=mask).last_hidden_state
        return cls(tok, model, int(embedder.model.tokenizer.pad_token_id))

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(texts)]

    def pad(self, ids: list[list[int]]) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, :len(x)] = torch.tensor(x, dtype=torch.long)
            mask[row, :len(x)] = 1
        return input_ids, mask

    def forward(self, input_ids: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
        import torch

        with torch.inference_mode():
            hidden = self._forward(input_ids, mask).float()
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        ids = self.tokenize(texts)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(ids), 0), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            vecs = self.forward(*self.pad([ids[i] for i in idx])).numpy()
            if out.shape[1] == 0:
                out = np.zeros((len(ids), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return out
