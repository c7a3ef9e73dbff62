"""Lexical retrieval: BM25 (bm25s scoring) over Chinese/English/mixed text.

Analysis (`Analyzer`), applied identically to chunks and queries:

1. NFKC (full-width letters and digits become ASCII) and lower case.
2. Traditional/Simplified folding with OpenCC. A text with more Traditional-only than
   Simplified-only characters is converted with `tw2sp` (characters *and* Taiwan phrases, so
   `軟體` becomes `软件`, not `软体`); otherwise with `t2s` (any stray Traditional characters); a
   text with no Traditional-only character is left as is (fast path, and `t2s`/`tw2sp` are not
   idempotent on Simplified text: `tw2sp` would turn `程序` into `进程`). So a query in either
   script matches both.
3. jieba in search mode (`cut_for_search`: `软件包` gives `软件` and `软件包`), so a query `安装软件`
   finds `如何安装软件包`.
4. Everything that is not Han is split into runs of letters/digits (`[^\\W_]+`), so English and
   other alphabetic scripts work without a stemmer.
5. A short list of English and Chinese function words is dropped.
6. A name of letters and digits glued by `.`, `-` or `_` (`ModelX3.5`, `qwen2.5-coder`) is kept whole
   as an extra term: jieba and step 4 cut it into pieces that many other chunks share.

Index (`LexicalIndex`): immutable. bm25s indexes are not incremental, so every change builds a
new index object. The per-chunk term counts are kept as a sparse matrix (chunks x vocabulary),
so a rebuild never re-runs jieba: it is a few vectorised numpy/scipy passes computing the same
eager BM25 score matrix as `bm25s.BM25.index` (method `lucene`, k1=1.5, b=0.75; equality is
tested), which is then handed to a `bm25s.BM25` object for scoring. The analysis of each chunk is
also cached in SQLite (`chunk_terms`), so start-up does not re-segment the corpus either.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import NamedTuple

import bm25s
import numpy as np
import scipy.sparse as sp

from rag.text.scripts import HAN, HAN_RE, HAN_RUN_RE

ANALYZER_ID = "zh-jieba-search.opencc-fold.words/2"  # 2: glued letter-digit names kept whole as well

K1 = 1.5
B = 0.75

# Han is `rag.text.scripts.HAN`: widening that set changes the terms, so it needs a new ANALYZER_ID.
_WORD = re.compile(f"[^\\W_{HAN}]+")
_GLUED_ALNUM = re.compile(r"(?<![a-z0-9])(?=[a-z0-9._-]*[a-z])[a-z0-9]+(?:[-_.][a-z0-9]+)+(?![a-z0-9])")

STOPWORDS_EN = frozenset(
    "a an and are as at be but by for if in into is it of on or such that the their then there these they "
    "this to was will with".split()
)
STOPWORDS_ZH = frozenset("的 了 是 在 和 与 及 或 也 都 而 就 着 之 其 把 被 于 吗 呢 吧 啊 呀 么 得 地 个 这 那".split())
STOPWORDS = STOPWORDS_EN | STOPWORDS_ZH


class TermCounts(NamedTuple):
    """Distinct terms of one text (first-occurrence order) and how often each occurs."""

    terms: tuple[str, ...]
    counts: np.ndarray  # int32, aligned with terms

    @property
    def length(self) -> int:
        return int(self.counts.sum())


# --------------------------------------------------------------------------- analysis


class Analyzer:
    """Text -> terms. Thread-safe. One shared instance: `get_analyzer()`."""

    id = ANALYZER_ID

    def __init__(self) -> None:
        self._init_lock = threading.Lock()
        self._ready = False

    # Lazily built: jieba's dictionary (~1 s) and OpenCC's converters are loaded on first use.
    def _ensure(self) -> None:
        if self._ready:
            return
        with self._init_lock:
            if self._ready:
                return
            import jieba
            import opencc

            jieba.setLogLevel(logging.WARNING)  # jieba prints its dictionary loading to stderr
            logging.getLogger("jieba").setLevel(logging.WARNING)
            jieba.initialize()
            self._cut_for_search = jieba.lcut_for_search
            self._t2s = opencc.OpenCC("t2s")
            self._tw2sp = opencc.OpenCC("tw2sp")
            self._trad_only, self._simp_only = _script_sets(os.path.join(os.path.dirname(opencc.__file__), "dictionary"))
            self._ready = True

    def warm_up(self) -> None:
        """Loads jieba and OpenCC now (about a second) instead of on the first request."""
        self._ensure()
        self.analyze("預熱 warm up 预热")

    def fold(self, text: str) -> str:
        """NFKC, lower case, Traditional -> Simplified (see the module docstring)."""
        text = unicodedata.normalize("NFKC", text).lower()
        if not HAN_RE.search(text):
            return text
        self._ensure()
        trad = sum(1 for ch in text if ch in self._trad_only)
        if trad == 0:
            return text
        simp = sum(1 for ch in text if ch in self._simp_only)
        return (self._tw2sp if trad > simp else self._t2s).convert(text)

    def analyze(self, text: str) -> list[str]:
        """All terms of `text` in order, with repeats (stop words removed)."""
        text = self.fold(text)
        out: list[str] = []
        if HAN_RE.search(text):
            self._ensure()
            pieces: Iterable[str] = self._cut_for_search(text)
        else:
            pieces = (text,)
        for piece in pieces:
            if HAN_RUN_RE.fullmatch(piece):
                if piece not in STOPWORDS:
                    out.append(piece)
                continue
            for word in _WORD.findall(piece):
                if word not in STOPWORDS:
                    out.append(word)
        # A name of letters and digits glued by . - _ (modelx3.5, qwen2.5-coder) is also one term, so a
        # query for it prefers the chunks naming it whole over those that share its pieces (3, 5).
        out += [m.group(0) for m in _GLUED_ALNUM.finditer(text) if any(c.isdigit() for c in m.group(0))]
        return out

    def term_counts(self, text: str) -> TermCounts:
        counter = Counter(self.analyze(text))
        return TermCounts(tuple(counter), np.fromiter(counter.values(), np.int32, len(counter)))

    def query_terms(self, text: str) -> list[str]:
        """Distinct terms of a query, in order."""
        return list(dict.fromkeys(self.analyze(text)))


def _script_sets(dictionary_dir: str) -> tuple[frozenset[str], frozenset[str]]:
    """Characters only Traditional text uses, and characters only Simplified text uses."""

    def load(name: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        with open(os.path.join(dictionary_dir, name), encoding="utf-8") as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition("\t")
                out[key] = value.split(" ")
        return out

    ts, st = load("TSCharacters.txt"), load("STCharacters.txt")
    ts_values = {x for v in ts.values() for x in v}
    st_values = {x for v in st.values() for x in v}
    trad = frozenset(c for c, v in ts.items() if len(c) == 1 and c not in v and c not in st and c not in ts_values)
    simp = frozenset(c for c, v in st.items() if len(c) == 1 and c not in v and c not in ts and c not in st_values)
    return trad, simp


_ANALYZER: Analyzer | None = None
_ANALYZER_LOCK = threading.Lock()


def get_analyzer() -> Analyzer:
    global _ANALYZER
    with _ANALYZER_LOCK:
        if _ANALYZER is None:
            _ANALYZER = Analyzer()
        return _ANALYZER


# --------------------------------------------------------------------------- vocabulary


class Vocabulary:
    """Term -> id, append-only and shared by successive `LexicalIndex` objects of one collection.

    Ids only grow, so an index built when the vocabulary had n terms ignores ids >= n; readers
    never need a lock. Terms of deleted chunks stay (document frequency 0, no effect on scores)
    until the next full rebuild (start-up)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self, terms: Sequence[str]) -> np.ndarray:
        """Ids of `terms`, adding the new ones (int32)."""
        d = self._ids
        try:
            return np.fromiter(map(d.__getitem__, terms), np.int32, len(terms))
        except KeyError:
            with self._lock:
                for t in dict.fromkeys(terms):  # distinct terms, first-seen order
                    if t not in d:
                        d[t] = len(d)
            return np.fromiter(map(d.__getitem__, terms), np.int32, len(terms))

    def lookup(self, terms: Iterable[str], limit: int) -> list[int]:
        """Ids of the known terms with id < limit; unknown terms are dropped."""
        d = self._ids
        out = []
        for t in terms:
            i = d.get(t)
            if i is not None and i < limit:
                out.append(i)
        return out


# --------------------------------------------------------------------------- index


class LexicalIndex:
    """An immutable BM25 index over chunks. `added`/`removed` return new objects; searches on
    the old object stay valid (swap the reference atomically)."""

    def __init__(self, vocab: Vocabulary, ids: np.ndarray, tf: sp.csr_matrix, analyzer: Analyzer | None = None):
        self.vocab = vocab
        self.ids = ids  # int64 chunk ids, ascending, one per row of tf
        self.tf = tf  # float32 term counts, chunks x vocabulary (width = vocabulary size at build)
        self.analyzer = analyzer or get_analyzer()
        self.doc_len = np.asarray(tf.sum(axis=1), dtype=np.float32).ravel() if tf.shape[0] else np.zeros(0, np.float32)
        self._scorer = _build_scorer(tf, self.doc_len) if tf.nnz else None

    # ---- construction

    @classmethod
    def empty(cls, vocab: Vocabulary | None = None, analyzer: Analyzer | None = None) -> LexicalIndex:
        vocab = vocab if vocab is not None else Vocabulary()
        return cls(vocab, np.zeros(0, np.int64), sp.csr_matrix((0, len(vocab)), dtype=np.float32), analyzer)

    @classmethod
    def build(
        cls,
        ids: Sequence[int] | np.ndarray,
        counts: Sequence[TermCounts | tuple[Sequence[str], Sequence[int]]],
        vocab: Vocabulary | None = None,
        analyzer: Analyzer | None = None,
    ) -> LexicalIndex:
        vocab = vocab if vocab is not None else Vocabulary()
        return cls.empty(vocab, analyzer).added(ids, counts)

    def _rows(self, counts: Sequence[TermCounts | tuple[Sequence[str], Sequence[int]]]) -> sp.csr_matrix:
        lengths = np.fromiter((len(c[0]) for c in counts), np.int64, len(counts))
        flat_terms: list[str] = []
        for c in counts:
            flat_terms.extend(c[0])
        data = (
            np.concatenate([np.asarray(c[1], dtype=np.float32) for c in counts])
            if counts
            else np.zeros(0, np.float32)
        )
        return self._csr(lengths, flat_terms, data)

    def _csr(self, lengths: np.ndarray, flat_terms: Sequence[str], data: np.ndarray) -> sp.csr_matrix:
        indptr = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        if indptr[-1] != len(flat_terms) or len(data) != len(flat_terms):
            raise ValueError("terms and counts differ in length")
        indices = self.vocab.ids(flat_terms)
        return sp.csr_matrix((data.astype(np.float32, copy=False), indices, indptr), shape=(len(lengths), len(self.vocab)))

    def added(
        self,
        ids: Sequence[int] | np.ndarray,
        counts: Sequence[TermCounts | tuple[Sequence[str], Sequence[int]]],
    ) -> LexicalIndex:
        """A new index with these chunks added (ids already present are ignored)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) != len(counts):
            raise ValueError("one TermCounts per id")
        if len(self.ids):
            fresh = ~np.isin(ids, self.ids)
            if not fresh.all():
                ids = ids[fresh]
                counts = [c for c, f in zip(counts, fresh) if f]
        if not len(ids):
            return self
        return self._with_rows(ids, self._rows(counts))

    def added_encoded(self, ids: Sequence[int] | np.ndarray, terms: Sequence[str], counts: Sequence[bytes]) -> LexicalIndex:
        """Like `added`, from the SQLite cache encoding (space-joined terms, uint16 LE counts);
        one join/split for all chunks instead of one per chunk (start-up speed)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not (len(ids) == len(terms) == len(counts)):
            raise ValueError("one terms/counts entry per id")
        if len(self.ids):
            fresh = ~np.isin(ids, self.ids)
            if not fresh.all():
                keep = np.flatnonzero(fresh)
                ids, terms, counts = ids[keep], [terms[i] for i in keep], [counts[i] for i in keep]
        if not len(ids):
            return self
        lengths = np.fromiter((len(b) // 2 for b in counts), np.int64, len(counts))
        nonempty = [t for t in terms if t]
        flat = " ".join(nonempty).split(" ") if nonempty else []
        data = np.frombuffer(b"".join(counts), dtype="<u2").astype(np.float32)
        return self._with_rows(ids, self._csr(lengths, flat, data))

    def _with_rows(self, ids: np.ndarray, new: sp.csr_matrix) -> LexicalIndex:
        width = len(self.vocab)
        old = sp.csr_matrix((self.tf.data, self.tf.indices, self.tf.indptr), shape=(self.tf.shape[0], width))
        new = sp.csr_matrix((new.data, new.indices, new.indptr), shape=(new.shape[0], width))
        tf = sp.vstack([old, new], format="csr", dtype=np.float32) if old.shape[0] else new
        all_ids = np.concatenate([self.ids, ids])
        if len(all_ids) > 1 and not (np.diff(all_ids) > 0).all():
            order = np.argsort(all_ids, kind="stable")
            all_ids, tf = all_ids[order], tf[order]
        return LexicalIndex(self.vocab, all_ids, tf, self.analyzer)

    def removed(self, ids: Iterable[int]) -> LexicalIndex:
        """A new index without these chunks (absent ids are ignored)."""
        gone = np.fromiter((int(i) for i in ids), np.int64)
        if not len(gone) or not len(self.ids):
            return self
        keep = ~np.isin(self.ids, gone)
        if keep.all():
            return self
        return LexicalIndex(self.vocab, self.ids[keep], self.tf[keep], self.analyzer)

    # ---- queries

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, chunk_id: int) -> bool:
        i = np.searchsorted(self.ids, chunk_id)
        return bool(i < len(self.ids) and self.ids[i] == chunk_id)

    def scores_for_terms(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every row (aligned with `ids`) for distinct query terms."""
        if self._scorer is None:
            return np.zeros(len(self.ids), np.float32)
        qids = self.vocab.lookup(dict.fromkeys(terms), self.tf.shape[1])
        if not qids:
            return np.zeros(len(self.ids), np.float32)
        return self._scorer.get_scores_from_ids(qids)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Top `k` (chunk id, BM25 score) for a query text, best first; only chunks sharing a term."""
        return self.search_terms(self.analyzer.query_terms(query), k)

    def search_terms(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        if k <= 0 or not len(self.ids):
            return []
        scores = self.scores_for_terms(terms)
        hit = np.flatnonzero(scores > 0)
        if not len(hit):
            return []
        if len(hit) > k:
            hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
        order = np.lexsort((self.ids[hit], -scores[hit]))  # best first, ties by chunk id
        hit = hit[order]
        return [(int(i), float(s)) for i, s in zip(self.ids[hit], scores[hit])]

    @cached_property
    def nbytes(self) -> int:
        """Approximate memory of the index arrays (term counts + BM25 score matrix)."""
        n = self.tf.data.nbytes + self.tf.indices.nbytes + self.tf.indptr.nbytes + self.ids.nbytes
        if self._scorer is not None:
            n += sum(a.nbytes for k, a in self._scorer.scores.items() if k != "num_docs")
        return n


def _build_scorer(tf: sp.csr_matrix, doc_len: np.ndarray) -> bm25s.BM25:
    """The eager BM25 score matrix bm25s would build (`BM25(method="lucene").index`), vectorised."""
    n_docs, n_vocab = tf.shape
    df = np.bincount(tf.indices, minlength=n_vocab).astype(np.float64)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
    avg = float(doc_len.mean()) if n_docs and doc_len.sum() > 0 else 1.0
    norm = (K1 * ((1 - B) + B * doc_len / avg)).astype(np.float32)
    rows = np.repeat(np.arange(n_docs, dtype=np.int32), np.diff(tf.indptr))
    tfv = tf.data.astype(np.float32, copy=False)
    data = norm[rows]
    data += tfv
    np.divide(tfv, data, out=data)
    data *= idf[tf.indices]
    csc = sp.csr_matrix((data, tf.indices, tf.indptr), shape=tf.shape).tocsc()
    scorer = bm25s.BM25(k1=K1, b=B, method="lucene")
    scorer.scores = {
        "data": csc.data.astype(np.float32, copy=False),
        "indices": csc.indices.astype(np.int32, copy=False),
        "indptr": csc.indptr.astype(np.int64, copy=False),
        "num_docs": n_docs,
    }
    scorer.vocab_dict = {}
    scorer.nonoccurrence_array = None
    return scorer
