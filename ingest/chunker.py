"""ParsedDocument -> chunks under a hard token cap, sentence- and structure-aware.

Contract
--------
* ``count_tokens(text)`` is the embedder tokenizer's count **without special tokens** (for a BERT
  model, no [CLS]/[SEP]); the caller reserves room for those (cap = model max length - specials).
  It must not truncate or pad (HF ``tokenizer.json`` files often enable both: call
  ``no_truncation()``/``no_padding()``), or counts are wrong.
* Every chunk satisfies ``chunk.token_count == count_tokens(chunk.text) <= max_tokens`` (checked
  with a real count of the final text, never an estimate), ``chunk.text ==
  doc.text[chunk.char_start:chunk.char_end]`` (no surrounding whitespace), and
  ``len(chunk.text) <= max_chars`` (default ``8 * max_tokens``: a guard against text the embedder
  squeezes into few tokens, e.g. [UNK] runs, which the generator would still see in full).
* ``page`` is the page of the chunk's first character; ``section_path`` is that of its first block.
* Chunks never cross a heading or a change of section. Inside a section they are packed greedily
  from sentence units and prefer to end at a page break, then a block (paragraph, list item)
  boundary, then a sentence boundary, as long as the chunk stays at least half as full as it
  could be.
* With ``overlap_tokens > 0`` a chunk starts with up to that many tokens of the previous chunk's
  trailing sentences (same section only); offsets stay exact.

Sentences
---------
Chinese: 。！？；… (and ｡), half-width . ! ? ; when followed by a space, a CJK character or the end,
or when preceded by a CJK character and not followed by an ASCII letter or digit ("文件.txt");
closing quotes/brackets stay with their sentence. English: ``.`` followed by whitespace ends a
sentence unless the word before is an abbreviation ("e.g.", "Dr.", "vs."), an initial, a list
number at the start of a line, or the next word starts in lower case; decimals, versions, URLs and
paths ("3.14", "1.2.3", "/etc/apt/sources.list") never split since no whitespace follows their dots.
Code and table blocks split by lines. A unit longer than the cap is split at clause punctuation
(，、,;；：: — and line breaks), then at the last whitespace before the cap or at a character
boundary, found by binary search on token counts.
The patterns are `rag.text.sentences.CHUNK_*`.

Cost
----
One ``count_tokens`` call per sentence plus about one per chunk (the check of the packed text);
long sentences add O(log n) calls per piece, each on at most ``max_chars`` characters. Linear in
the document size overall.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, Sequence

from ingest.types import Block, ChunkDraft, ParsedDocument
from rag.text.scripts import is_no_space
from rag.text.sentences import CHUNK_CLAUSE_END, CHUNK_CLOSERS, CHUNK_FULLWIDTH_END, CHUNK_SENTENCE_END

__all__ = ["chunk_document", "split_sentences"]

_WS_RE = re.compile(r"\s")

ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs cf fig figs no nos vol vols approx ca al e.g i.e eg ie viz resp "
    "sec ch p pp ed eds ref refs eq eqs dept est jan feb mar apr jun jul aug sep sept oct nov dec "
    "mt ft rev gen col lt sgt capt cmdr adm gov pres rep sen".split()
)

# Boundary strengths: which break a chunk prefers to end at.
PAGE_BREAK, BLOCK_BREAK, SENTENCE_BREAK, CLAUSE_BREAK, HARD_BREAK = 4, 3, 2, 1, 0


def _strip_span(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


_NEXT_VISIBLE_RE = re.compile(r"\s*(\S)")


def _period_ends_sentence(text: str, start: int, end: int) -> bool:
    """Whether the dot run text[start:end] (closers included), followed by whitespace, ends a sentence."""
    m = _NEXT_VISIBLE_RE.match(text, end)
    if m is not None and m.group(1).islower():
        return False  # "etc. and", "e.g. the", unknown abbreviations
    if len(text[start:end].rstrip(CHUNK_CLOSERS)) > 1:
        return True  # an ellipsis before an upper-case word, CJK or the end
    w = start
    while w > 0 and start - w < 64 and not text[w - 1].isspace():
        w -= 1
    if w == start:
        return True
    word = text[w:start].lstrip("([{\"'“‘")
    low = word.lower()
    if low in ABBREVIATIONS:
        return False
    if len(word) == 1 and word.isalpha():
        return False  # an initial: "J. Smith"
    if "." in word and all(len(part) <= 2 for part in word.split(".")):
        return False  # "U.S.", "a.m."
    if word.isdigit() and len(word) <= 3:
        j = w
        while j > 0 and text[j - 1] in " \t" and w - j < 64:
            j -= 1
        if j == 0 or text[j - 1] == "\n":
            return False  # "1. Install" at the start of a line: a list number
    return True


def split_sentences(text: str, kind: str = "paragraph") -> list[tuple[int, int]]:
    """Sentence spans of `text` (offsets into it), stripped of whitespace, in order."""
    if kind in ("code", "table"):
        spans = []
        pos = 0
        for line in text.split("\n"):
            s, e = _strip_span(text, pos, pos + len(line))
            if s < e:
                spans.append((s, e))
            pos += len(line) + 1
        return spans
    spans: list[tuple[int, int]] = []
    start = 0
    n = len(text)
    for m in CHUNK_SENTENCE_END.finditer(text):
        end = m.end()
        token = m.group(0)
        if token[0] == "\n":
            cut = m.start()
        else:
            nxt = text[end] if end < n else ""
            boundary_ok = nxt == "" or nxt.isspace() or is_no_space(nxt)
            if not boundary_ok and m.start() > 0 and is_no_space(text[m.start() - 1]):
                # Chinese text with half-width punctuation: "好.“下一句" ends, "文件.txt" does not
                boundary_ok = not (nxt.isascii() and nxt.isalnum())
            if token[0] in CHUNK_FULLWIDTH_END:
                cut = end
            elif token[0] in "!?;":
                cut = end if boundary_ok else -1
            else:  # dots (or the full-width ．)
                if token[0] == "．":
                    cut = end
                elif not boundary_ok:
                    cut = -1
                elif nxt and not nxt.isspace():
                    cut = end  # CJK around the dot
                else:
                    cut = end if _period_ends_sentence(text, m.start(), end) else -1
        if cut < 0:
            continue
        s, e = _strip_span(text, start, cut)
        if s < e:
            spans.append((s, e))
        start = end
    s, e = _strip_span(text, start, n)
    if s < e:
        spans.append((s, e))
    return spans


def _split_clauses(text: str, s: int, e: int) -> list[tuple[int, int]]:
    spans = []
    start = s
    for m in CHUNK_CLAUSE_END.finditer(text, s, e):
        cs, ce = _strip_span(text, start, m.end())
        if cs < ce:
            spans.append((cs, ce))
        start = m.end()
    cs, ce = _strip_span(text, start, e)
    if cs < ce:
        spans.append((cs, ce))
    return spans


class _Units:
    """Parallel lists describing the packable units of one section."""

    __slots__ = ("start", "end", "tokens", "brk", "block")

    def __init__(self) -> None:
        self.start: list[int] = []
        self.end: list[int] = []
        self.tokens: list[int] = []
        self.brk: list[int] = []  # strength of the boundary *before* this unit
        self.block: list[Block] = []

    def add(self, s: int, e: int, tokens: int, brk: int, block: Block) -> None:
        self.start.append(s)
        self.end.append(e)
        self.tokens.append(tokens)
        self.brk.append(brk)
        self.block.append(block)

    def __len__(self) -> int:
        return len(self.start)


class _Chunker:
    def __init__(self, text: str, count_tokens: Callable[[str], int], max_tokens: int, overlap_tokens: int, max_chars: int):
        self.text = text
        self.count = count_tokens
        self.cap = max_tokens
        self.overlap = overlap_tokens
        self.max_chars = max_chars
        self.calls = 0

    def n_tokens(self, s: int, e: int) -> int:
        self.calls += 1
        return self.count(self.text[s:e])

    # ------------------------------------------------------------------ units
    def add_block_units(self, units: _Units, block: Block, first_brk: int) -> None:
        text = self.text
        block_text = text[block.start:block.end]
        brk = first_brk
        for s, e in split_sentences(block_text, block.kind):
            s += block.start
            e += block.start
            self._add_span(units, s, e, brk, block, CLAUSE_BREAK)
            brk = SENTENCE_BREAK if block.kind not in ("code", "table") else CLAUSE_BREAK

    def _add_span(self, units: _Units, s: int, e: int, brk: int, block: Block, inner_brk: int) -> None:
        if e - s <= self.max_chars:
            tokens = self.n_tokens(s, e)
            if tokens <= self.cap:
                units.add(s, e, tokens, brk, block)
                return
        if inner_brk == CLAUSE_BREAK:
            clauses = _split_clauses(self.text, s, e)
            if len(clauses) > 1:
                for cs, ce in clauses:
                    self._add_span(units, cs, ce, brk, block, HARD_BREAK)
                    brk = CLAUSE_BREAK
                return
        for hs, he, tokens in self._hard_split(s, e):
            units.add(hs, he, tokens, brk, block)
            brk = HARD_BREAK

    def _hard_split(self, s: int, e: int) -> list[tuple[int, int, int]]:
        """Pieces of text[s:e], each within the token cap and `max_chars`, cut at whitespace when it
        is near the cap, else at a character boundary found by binary search."""
        text = self.text
        out: list[tuple[int, int, int]] = []
        pos = s
        while pos < e:
            pos, _ = _strip_span(text, pos, e)
            if pos >= e:
                break
            limit = min(e, pos + self.max_chars)
            tokens = self.n_tokens(pos, limit)
            if tokens <= self.cap and limit == e:
                ps, pe = _strip_span(text, pos, e)
                out.append((ps, pe, tokens if (ps, pe) == (pos, e) else self.n_tokens(ps, pe)))
                break
            if tokens <= self.cap:
                best, best_tokens = limit - pos, tokens
            else:
                best, best_tokens = self._longest_prefix(pos, limit, tokens)
            cut = best
            if pos + best < e:
                # prefer the last whitespace in the final 30% of the piece (word boundary)
                window_start = pos + max(1, int(best * 0.7))
                ws = -1
                for i in range(pos + best - 1, window_start - 1, -1):
                    if text[i].isspace():
                        ws = i
                        break
                if ws > pos:
                    cut = ws - pos
                else:
                    while cut > 1 and unicodedata.combining(text[pos + cut]):
                        cut -= 1
            ps, pe = _strip_span(text, pos, pos + cut)
            if ps < pe:
                if (ps, pe) == (pos, pos + best):
                    piece_tokens = best_tokens
                else:
                    piece_tokens = self.n_tokens(ps, pe)
                    if piece_tokens > self.cap:  # token counts are not monotonic in prefixes
                        cut = best
                        ps, pe = _strip_span(text, pos, pos + cut)
                        piece_tokens = self.n_tokens(ps, pe)
                out.append((ps, pe, piece_tokens))
            pos += cut
        return out

    def _longest_prefix(self, pos: int, limit: int, limit_tokens: int) -> tuple[int, int]:
        """A long L with count(text[pos:pos+L]) <= cap (and that count); text[pos:limit] is over.

        Not necessarily the longest: a prefix within `slack` tokens of the cap is long enough (the
        cut then moves back to whitespace anyway). Token counts grow about linearly with length, so
        interpolating gets there in one or two counts where exact bisection needed ~11 (what made
        one-line documents slow); a step after a poor guess bisects, so the worst case stays
        logarithmic."""
        slack = max(1, self.cap // 32)
        lo, lo_tokens = 0, 0
        hi, hi_tokens = limit - pos, limit_tokens  # count(hi) > cap
        bisect = False
        while hi - lo > 1 and lo_tokens < self.cap - slack:
            if bisect:
                mid = (lo + hi) // 2
            else:
                aim = self.cap - slack // 2  # aim inside the slack, so an overshoot is rarer than a hit
                slope = (hi - lo) / max(1, hi_tokens - lo_tokens)
                mid = min(hi - 1, max(lo + 1, lo + int((aim - lo_tokens) * slope)))
            before = hi - lo
            c = self.n_tokens(pos, pos + mid)
            if c <= self.cap:
                lo, lo_tokens = mid, c
            else:
                hi, hi_tokens = mid, c
            bisect = not bisect and (hi - lo) > before // 2
        if lo == 0:
            raise ValueError(
                f"max_tokens={self.cap} is smaller than the token count of a single character "
                f"({self.text[pos]!r}); raise the cap"
            )
        return lo, lo_tokens

    # ------------------------------------------------------------------ packing
    def pack(self, units: _Units, out: list[ChunkDraft]) -> None:
        n = len(units)
        if n == 0:
            return
        starts, ends, toks, brks = units.start, units.end, units.tokens, units.brk
        prefix = [0]
        for t in toks:
            prefix.append(prefix[-1] + t)
        cap, max_chars = self.cap, self.max_chars
        i = 0  # first unit not yet in any chunk
        a = 0  # first unit of the chunk (a < i: overlap)
        while i < n:
            j = i
            while j < n and prefix[j + 1] - prefix[a] <= cap and ends[j] - starts[a] <= max_chars:
                j += 1
            if j == i:
                if a < i:
                    a += 1  # the overlap leaves no room: shorten it
                    continue
                j = i + 1  # cannot happen (every unit fits alone); never loop forever
            k = j
            if j < n:
                full = prefix[j] - prefix[a]
                best_strength = -1
                for cand in range(j, i, -1):  # boundary before unit `cand`
                    if prefix[cand] - prefix[a] < full / 2:
                        break
                    if brks[cand] > best_strength:
                        best_strength, k = brks[cand], cand
            while True:
                tokens = self.n_tokens(starts[a], ends[k - 1])
                if tokens <= cap:
                    break
                if k - 1 > i:
                    k -= 1
                elif a < i:
                    a += 1
                else:
                    break  # a single unit, counted alone when it was made: cannot exceed the cap
            if tokens > 0:
                block = units.block[a]
                out.append(
                    ChunkDraft(
                        ordinal=len(out),
                        text=self.text[starts[a]:ends[k - 1]],
                        char_start=starts[a],
                        char_end=ends[k - 1],
                        token_count=tokens,
                        page=block.page,
                        section_path=block.section_path,
                    )
                )
            prev_a = a
            i = a = k
            if self.overlap and i < n:
                acc = 0
                while a - 1 > prev_a and acc + toks[a - 1] <= self.overlap:
                    acc += toks[a - 1]
                    a -= 1


def _fallback_blocks(text: str) -> list[Block]:
    blocks = []
    for m in re.finditer(r"\S(?:.*?\S)?(?=\s*\n[ \t]*\n|\s*$)", text, re.DOTALL):
        blocks.append(Block(kind="paragraph", start=m.start(), end=m.end()))
    return blocks


def chunk_document(
    doc: ParsedDocument,
    count_tokens: Callable[[str], int],
    max_tokens: int = 256,
    overlap_tokens: int = 0,
    *,
    max_chars: int | None = None,
) -> list[ChunkDraft]:
    """Split `doc` into chunks of at most `max_tokens` tokens (see the module docstring)."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if overlap_tokens < 0 or (overlap_tokens and overlap_tokens >= max_tokens):
        raise ValueError("overlap_tokens must be >= 0 and smaller than max_tokens")
    max_chars = max_chars or 8 * max_tokens
    blocks: Sequence[Block] = doc.blocks or _fallback_blocks(doc.text)
    chunker = _Chunker(doc.text, count_tokens, max_tokens, overlap_tokens, max_chars)
    out: list[ChunkDraft] = []
    units = _Units()
    prev: Block | None = None
    for block in blocks:
        if block.end <= block.start:
            continue
        new_section = prev is None or block.kind == "heading" or block.section_path != prev.section_path
        if new_section:
            chunker.pack(units, out)
            units = _Units()
            brk = BLOCK_BREAK
        else:
            brk = PAGE_BREAK if block.page != prev.page else BLOCK_BREAK
        chunker.add_block_units(units, block, brk)
        prev = block
    chunker.pack(units, out)
    return out
