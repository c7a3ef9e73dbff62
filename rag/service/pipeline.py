"""One document through parse -> chunk -> embed -> store, reporting progress as it goes.

Nothing is written until the end: the document, its chunks, vectors and the job's `done` state
land in one SQLite transaction (`IndexManager.add_document`), and only then reach the indexes.
A failure at any stage leaves no trace but the job's error.

Work per document is bounded so that no single upload can hold a worker for long: its text length,
chunk count and repetitiveness are checked before any embedding, embedding has a wall-clock limit,
and a client's cancel request is honoured between stages and between embedding batches. Jobs that
run at once take turns at the embedder batch by batch (`FairTurns`).
"""

from __future__ import annotations

import hashlib
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ingest import errors
from ingest.chunker import chunk_document
from ingest.parsers import parse_document
from ingest.types import ChunkDraft, ParsedDocument
from rag import store
from rag.index.search_index import SearchIndex
from rag.index.windows import pooled
from rag.models.embedder import Embedder
from rag.service.turns import FairTurns
from rag.settings import Settings
from rag.text.lang import Language, detect_language

ProgressFn = Callable[[dict], None]


class PassageEmbedder(Protocol):
    """What ingestion embeds with: the server's `Embedder`, or an `EmbedProcess` child."""

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class StageTimes:
    parse_s: float = 0.0
    chunk_s: float = 0.0
    embed_s: float = 0.0
    store_s: float = 0.0

    def as_dict(self) -> dict:
        return {k: round(v, 3) for k, v in vars(self).items()}


@dataclass
class Cancel:
    """A job's cancel request, set by another thread and checked by the pipeline at safe points."""

    requested: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        if self.requested.is_set():
            raise errors.job_cancelled()


@dataclass
class Outcome:
    added: store.AddedDocument
    pages: int
    chunks: int
    tokens: int
    times: StageTimes = field(default_factory=StageTimes)


LANGUAGE_SAMPLE_CHARS = 20_000  # what language detection reads of a document, however large it is
LANGUAGE_SAMPLE_PIECES = 40


def document_language(texts: list[str], max_chars: int = LANGUAGE_SAMPLE_CHARS) -> Language:
    """The language of a document from its chunk texts: at most `LANGUAGE_SAMPLE_PIECES` chunks,
    evenly spaced from the first to the last, each cut to an equal share of `max_chars`."""
    n = len(texts)
    k = min(n, LANGUAGE_SAMPLE_PIECES)
    picked = sorted({j * (n - 1) // max(1, k - 1) for j in range(k)})
    share = max_chars // max(1, k)
    return detect_language("\n".join(texts[i][:share] for i in picked)[:max_chars])


# Compressed bytes of text per chunk: natural text, logs and numeric tables measured 82-374 (Debian FAQ
# en/zh, a syslog, CSVs); a character, word or sentence repeated all over 1-7. Documents of few
# chunks are cheap whatever they hold, so only more than `REPETITION_FROM_CHUNKS` are judged.
MIN_CONTENT_BYTES_PER_CHUNK = 20
REPETITION_FROM_CHUNKS = 32


def check_not_repetitive(text: str, chunks: int) -> None:
    """`repetitive_text` for a document whose chunks would mostly repeat each other (100 KB of `[`
    makes ~400 chunks): it would hold a worker embedding near-identical vectors."""
    if chunks <= REPETITION_FROM_CHUNKS:
        return
    content = len(zlib.compress(text.encode("utf-8", "surrogatepass"), 1))
    if content < chunks * MIN_CONTENT_BYTES_PER_CHUNK:
        raise errors.repetitive_text(chunks, content)


def effective_chunk_cap(settings: Settings, embedder: Embedder) -> int:
    """The configured cap, lowered if the embedder could not see a whole chunk (it would truncate it)."""
    return max(8, min(settings.chunk_tokens, embedder.max_content_tokens))


class Pipeline:
    def __init__(self, settings: Settings, embedder: Embedder, index: SearchIndex,
                 passages: PassageEmbedder | None = None):
        self.settings = settings
        self.embedder = embedder  # tokens, dimension, model id; and passages unless `passages` is given
        self.passages = passages or embedder
        self.index = index
        self.turns = FairTurns()  # the embedder, batch by batch, among the jobs running at once

    def run(self, conn: store.Connection, collection: str, filename: str, data: bytes, job_id: str | None,
            progress: ProgressFn = lambda p: None, cancel: Cancel | None = None) -> Outcome:
        cancel = cancel or Cancel()
        times = StageTimes()
        sha = hashlib.sha256(data).hexdigest()
        meta = store.NewDocument(filename=filename, format="unknown", sha256=sha, size_bytes=len(data))
        if store.find_document_by_sha(conn, collection, sha) is not None:
            added = self.index.add_document(conn, collection, meta, [], np.zeros((0, 0), np.float32), job_id,
                                            embed_model=self.embedder.model_id)
            return Outcome(added, added.document.page_count, 0, 0, times)

        progress({"stage": "parsing"})
        t0 = time.monotonic()
        doc = parse_document(data, filename, self.settings)
        times.parse_s = time.monotonic() - t0
        if len(doc.text) > self.settings.max_document_chars:
            raise errors.document_too_long(len(doc.text), self.settings.max_document_chars)
        cancel.check()

        progress({"stage": "chunking", "pages": doc.page_count})
        t0 = time.monotonic()
        chunks = self._chunk(doc)
        times.chunk_s = time.monotonic() - t0
        if len(chunks) > self.settings.max_document_chunks:
            raise errors.too_many_chunks(len(chunks), self.settings.max_document_chunks)
        check_not_repetitive(doc.text, len(chunks))
        cancel.check()

        vectors, windows = self._embed(chunks, doc, progress, times, cancel)
        cancel.check()

        progress({"stage": "indexing", "pages": doc.page_count, "chunks": len(chunks)})
        t0 = time.monotonic()
        meta = store.NewDocument(filename=filename, format=doc.format, sha256=sha, size_bytes=len(data),
                                page_count=doc.page_count, title=doc.title, encoding=doc.encoding,
                                language=document_language([c.text for c in chunks]))
        added = self.index.add_document(conn, collection, meta, chunks, vectors, job_id,
                                        embed_model=self.embedder.model_id, windows=windows)
        times.store_s = time.monotonic() - t0
        return Outcome(added, doc.page_count, len(chunks), sum(c.token_count for c in chunks), times)

    def _chunk(self, doc: ParsedDocument) -> list[ChunkDraft]:
        cap = effective_chunk_cap(self.settings, self.embedder)
        chunks = chunk_document(doc, self.embedder.count_tokens, cap, min(self.settings.chunk_overlap_tokens, cap // 2))
        if not chunks:
            raise errors.no_text()
        return chunks

    def windows_of(self, chunk: ChunkDraft) -> list[tuple[int, int]]:
        """[start, end) spans within the chunk's text that are embedded (the whole chunk when it
        fits in one window). Sentence-aware: the chunker itself splits the chunk's text."""
        size = self.settings.window_tokens
        if size <= 0 or chunk.token_count <= size:
            return [(0, len(chunk.text))]
        parts = chunk_document(ParsedDocument(chunk.text, "text"), self.embedder.count_tokens, size)
        return [(p.char_start, p.char_end) for p in parts] or [(0, len(chunk.text))]

    def _embed(self, chunks: list[ChunkDraft], doc: ParsedDocument, progress: ProgressFn,
               times: StageTimes, cancel: Cancel) -> tuple[np.ndarray, list[store.ChunkWindows | None]]:
        """One vector per chunk (pooled from its windows) and the windows of chunks that have several."""
        t0 = time.monotonic()
        deadline = t0 + self.settings.max_embed_seconds
        batch = max(1, self.settings.embed_batch_size)
        spans = [self.windows_of(c) for c in chunks]
        pieces = [(i, s, e) for i, sp in enumerate(spans) for s, e in sp]
        # Length-sorted batches pad less; results are put back in piece order.
        order = sorted(range(len(pieces)), key=lambda j: pieces[j][2] - pieces[j][1])
        out = np.zeros((len(pieces), self.embedder.dim), dtype=np.float32)
        last = 0.0
        for start in range(0, len(order), batch):
            cancel.check()
            if time.monotonic() > deadline:
                raise errors.embed_time_limit(time.monotonic() - t0, start, len(order))
            idx = order[start:start + batch]
            texts = [chunks[pieces[j][0]].text[pieces[j][1]:pieces[j][2]] for j in idx]
            with self.turns:
                out[idx] = self.passages.embed_passages(texts)
            now = time.monotonic()
            if now - last > 0.5:
                last = now
                fraction = min(start + batch, len(order)) / len(order)
                progress({"stage": "embedding", "pages": doc.page_count, "chunks": len(chunks),
                          "embedded": int(fraction * len(chunks)), "fraction": round(fraction, 3)})
        vectors = np.zeros((len(chunks), self.embedder.dim), dtype=np.float32)
        windows: list[store.ChunkWindows | None] = []
        j = 0
        for i, sp in enumerate(spans):
            own = out[j:j + len(sp)]
            j += len(sp)
            if len(sp) == 1:
                vectors[i] = own[0]
                windows.append(None)
            else:
                vectors[i] = pooled(own, sp)
                windows.append(store.ChunkWindows(tuple(sp), own.copy()))
        times.embed_s = time.monotonic() - t0
        return vectors, windows
