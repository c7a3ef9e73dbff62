"""Passages from chunks: merging adjacent chunks (overlap removed) and neighbour expansion.

A chunk *looks cut off* at its end when it ends on a colon or a list lead-in ("as follows", 如下, 包括),
on a comma-like mark, or without sentence-final punctuation; at its start when it begins with a
lowercase letter, punctuation, or a continuation word ("and", "but", 而且, 但是, ...). Expansion adds the
next chunk of the same document when the passage ends cut off or the next chunk starts mid-sentence,
and the previous chunk when the passage starts mid-sentence; at most `max_neighbours` on each side, and
never when the passages would no longer fit the context budget.

Chunks may overlap in text. Merging uses their document offsets (`char_start`/`char_end`): the part of
a chunk before the previous chunk's end is dropped. When a chunk's text does not match its offsets, the
longest suffix/prefix text overlap (at least 8 characters) is removed instead.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Callable

from rag.ask.events import Expansion
from rag.ask.pool import Pooled
from rag.ask.prompts import neutralise
from rag.ask.types import Candidate, ChunkSpan, Passage
from rag.text.scripts import HAN_RE

_FINAL = set("。！？!?….")
_CLOSERS = set("”’\"')）]】」』》")
_COMMA_LIKE = set(",，、;；-–—(（/")
_LEAD_INS_EN = ("as follows", "the following", "following", "include", "includes", "including", "such as", "namely", "e.g", "i.e")
_LEAD_INS_ZH = ("如下", "以下", "包括", "例如", "比如", "分别是", "分别为", "有以下", "即")
_CONT_EN = frozenset("and but or nor so yet which that whose whom because while whereas although though however therefore also plus then".split())
_CONT_ZH = ("而且", "但是", "但", "并且", "并且", "以及", "或者", "所以", "因此", "然后", "同时", "不过", "可是", "然而", "从而", "以便", "并", "且")
_START_PUNCT = set(",，、;；:：.。!！?？)）]】」』”’")


def end_cut_reason(text: str) -> str | None:
    """Why `text` looks cut off at its end, or None."""
    t = text.rstrip()
    while t and t[-1] in _CLOSERS:
        t = t[:-1].rstrip()
    if not t:
        return None
    last = t[-1]
    if last in ":：":
        return f"ends on a colon ({t[-12:].strip()!r})"
    low = t.casefold()
    for w in (*_LEAD_INS_EN, *_LEAD_INS_ZH):
        if low.endswith(w) and (HAN_RE.match(w[0]) or len(low) == len(w) or not low[-len(w) - 1].isalnum()):
            return f"ends on a list lead-in ({w!r})"
    if last in _FINAL:
        return None
    if last in _COMMA_LIKE:
        return f"ends on {last!r}"
    return f"ends without sentence-final punctuation ({t[-12:].strip()!r})"


def start_cut_reason(text: str) -> str | None:
    """Why `text` looks like it starts mid-sentence, or None."""
    t = text.lstrip()
    if not t:
        return None
    first = t[0]
    if first in _START_PUNCT:
        return f"starts with {first!r}"
    if first.isascii() and first.isalpha() and first.islower():
        return f"starts with a lowercase letter ({t[:12]!r})"
    m = re.match(r"[A-Za-z]+", t)
    if m and m.group(0).casefold() in _CONT_EN:
        return f"starts with {m.group(0)!r}"
    for w in _CONT_ZH:
        if t.startswith(w):
            if len(w) == 1 and len(t) > 1 and t[1] in "非列行不":  # 并非, 并列, 并行, 且不 ...: ordinary words
                continue
            return f"starts with {w!r}"
    return None


def _text_overlap(a: str, b: str, minimum: int = 8) -> int:
    top = min(len(a), len(b), 4000)
    for k in range(top, minimum - 1, -1):
        if a.endswith(b[:k]):
            return k
    return 0


def _joiner(left: str, right: str) -> str:
    if not left or not right:
        return ""
    a, b = left[-1], right[0]
    if a.isspace() or b.isspace():
        return ""
    if HAN_RE.match(a) or HAN_RE.match(b) or a in "。，、；：！？" or b in "。，、；：！？":
        return ""
    return " "


def merge_chunks(chunks: list[Candidate], retrieved: set[int]) -> tuple[str, list[ChunkSpan], int, int]:
    """Merge chunks of one document (any order) into one text without repeated overlap."""
    cs = sorted(chunks, key=lambda c: (c.char_start, c.ordinal))
    text = ""
    spans: list[ChunkSpan] = []
    end = None
    prev_consistent = True
    for c in cs:
        consistent = len(c.text) == c.char_end - c.char_start
        if end is None:
            start_in = 0
            text = c.text
        elif consistent and prev_consistent and c.char_start <= end:
            overlap = end - c.char_start
            start_in = len(text) - overlap
            if c.char_end > end:
                text += c.text[overlap:]
        elif consistent and prev_consistent:  # a gap between the chunks (whitespace trimmed at chunking)
            sep = _joiner(text, c.text)
            start_in = len(text) + len(sep)
            text += sep + c.text
        else:
            k = _text_overlap(text, c.text)
            if k:
                start_in = len(text) - k
                text += c.text[k:]
            else:
                sep = _joiner(text, c.text)
                start_in = len(text) + len(sep)
                text += sep + c.text
        spans.append(ChunkSpan(c.chunk_id, start_in, start_in + len(c.text), c.page, c.chunk_id in retrieved))
        end = c.char_end if end is None else max(end, c.char_end)
        prev_consistent = prev_consistent and consistent
    return text, spans, cs[0].char_start, end or 0


def make_passage(chunks: list[Candidate], *, retrieved: set[int], score: float, rank: int) -> Passage:
    text, spans, start, end = merge_chunks(chunks, retrieved)
    first = chunks[0]
    p = Passage(
        document_id=first.document_id,
        filename=first.filename,
        text=neutralise(text),  # same length: spans stay valid
        char_start=start,
        char_end=end,
        spans=spans,
        score=score,
        rank=rank,
    )
    p.chunks = sorted(chunks, key=lambda c: (c.char_start, c.ordinal))
    return p


def _adjacent(a: Candidate, b: Candidate) -> bool:
    """b directly follows a in the same document."""
    return a.document_id == b.document_id and (
        a.next_id == b.chunk_id or b.prev_id == a.chunk_id or b.ordinal == a.ordinal + 1 or (a.char_start < b.char_start <= a.char_end)
    )


def build_passages(selected: list[Pooled]) -> list[Passage]:
    """Selected pool entries -> passages (adjacent chunks of one document merged), best first."""
    by_doc: dict[int, list[Pooled]] = {}
    for p in selected:
        by_doc.setdefault(p.candidate.document_id, []).append(p)
    passages: list[Passage] = []
    for items in by_doc.values():
        items.sort(key=lambda p: (p.candidate.char_start, p.candidate.ordinal))
        run: list[Pooled] = [items[0]]
        for it in items[1:]:
            if _adjacent(run[-1].candidate, it.candidate):
                run.append(it)
            else:
                passages.append(_from_run(run))
                run = [it]
        passages.append(_from_run(run))
    passages.sort(key=lambda p: (-p.score, p.rank))
    return passages


def _from_run(run: list[Pooled]) -> Passage:
    return make_passage(
        [p.candidate for p in run],
        retrieved={p.candidate.chunk_id for p in run},
        score=max(p.candidate.fused_score for p in run),
        rank=min(p.rank for p in run),
    )


def expand_passages(
    passages: list[Passage],
    *,
    get_chunk: Callable[[int], Candidate | None],
    cost: Callable[[Passage], int],
    space: int,
    max_neighbours: int,
    emit: Callable[[Expansion], None],
    incomplete: bool = False,
) -> list[Passage]:
    """Neighbour expansion in value order. `cost(p)` is the passage's token cost in the prompt; the
    passages processed so far (more valuable ones) plus an expanded passage must stay within `space`.
    `incomplete`: the model said the top passage is cut off (expand it at its end regardless)."""
    todo = list(passages)
    done: list[Passage] = []
    cache: dict[int, Candidate | None] = {}

    def fetch(cid: int) -> Candidate | None:
        if cid not in cache:
            cache[cid] = get_chunk(cid)
        return cache[cid]

    def owner(cid: int) -> Passage | None:
        for q in (*done, *todo):
            if cid in q.chunk_ids:
                return q
        return None

    while todo:
        p = todo.pop(0)
        retrieved = {s.chunk_id for s in p.spans if s.retrieved}
        for side in ("next", "prev"):
            for step in range(max_neighbours):
                chunks: list[Candidate] = p.chunks
                edge = chunks[-1] if side == "next" else chunks[0]
                nid = edge.next_id if side == "next" else edge.prev_id
                if nid is None:
                    break
                other = owner(nid)
                if other is p:
                    break
                neighbour = fetch(nid) if other is None else next(c for c in other.chunks if c.chunk_id == nid)
                if neighbour is None or neighbour.document_id != p.document_id:
                    break
                if side == "next":
                    r_end, r_next = end_cut_reason(p.text), start_cut_reason(neighbour.text)
                    if r_end:
                        reason = f"passage {r_end}"
                    elif r_next:
                        reason = f"next chunk {r_next}"
                    elif incomplete and step == 0 and not done:
                        reason = "the model said the passage is incomplete"
                    else:
                        reason = None
                else:
                    r = start_cut_reason(p.text)
                    reason = f"passage {r}" if r else None
                if reason is None:
                    break
                if other is not None:
                    members = [*chunks, *other.chunks]
                    new_retrieved = retrieved | {s.chunk_id for s in other.spans if s.retrieved}
                    score, rank = max(p.score, other.score), min(p.rank, other.rank)
                else:
                    members = [*chunks, neighbour]
                    new_retrieved = retrieved  # marked as added by expansion, even if some query retrieved it
                    score, rank = p.score, p.rank
                candidate = make_passage(members, retrieved=new_retrieved, score=score, rank=rank)
                before = sum(cost(q) for q in done if q is not other)
                total = before + cost(candidate)
                considered = partial(Expansion, passage_of=p.chunk_ids[0], side=side, chunk_id=nid, reason=reason,
                                     merged_with_selected=other is not None)
                if total > space:
                    emit(considered(added=False, note=f"skipped: {total} tokens would exceed the {space} available for passages"))
                    break
                emit(considered(added=True, tokens_after=cost(candidate), total_tokens=total))
                if other is not None:
                    if other in done:
                        done.remove(other)
                    else:
                        todo.remove(other)
                p, retrieved = candidate, new_retrieved
        done.append(p)
    done.sort(key=lambda p: (-p.score, p.rank))
    return done
