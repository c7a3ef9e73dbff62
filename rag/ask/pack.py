"""Packing passages into the answering prompt with exact token counts from the generator's tokenizer.

Invariant (property-tested): ``llm.prompt_tokens(result.messages) + result.max_new_tokens <= window``
and ``llm.prompt_tokens(result.messages) <= prompt_budget``.

1. The bare prompt (instructions + question, no passages) is measured exactly. If it plus the answer
   room does not fit the window, the answer room shrinks (to at least `MIN_ANSWER_TOKENS`), else the
   question is too long (`QuestionTooLong`).
2. Passages, most valuable first, are added while their estimated cost (their block's token count)
   fits; one that does not fit is dropped (reason recorded) and smaller, less valuable ones are still
   tried. If the most valuable passage alone does not fit, it is truncated at the last sentence
   boundary that fits (a hard cut inside a sentence only when no sentence boundary fits).
3. The whole prompt is then counted exactly; while it is over the limit the least valuable kept passage
   is dropped (or the only one truncated further). Token counts of concatenated text are not always
   the sum of the parts, hence this final exact check.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from rag.ask.events import Packing
from rag.ask.ports import LLM
from rag.ask.prompts import answer_messages, passage_block
from rag.ask.types import ChunkSpan, Passage, QuestionTooLong
from rag.text.sentences import PACK_SENTENCE_END

MIN_ANSWER_TOKENS = 16

MessagesFn = Callable[[list[str], str, str], list[dict]]


@dataclass
class PackResult:
    kept: list[Passage]
    dropped: list[dict]
    messages: list[dict]
    prompt_tokens: int
    max_new_tokens: int
    limit: int  # most prompt tokens allowed (window - answer room, and the prompt budget)
    window: int
    bare_tokens: int
    fits: bool = True  # False: not even the bare prompt fits the prompt budget
    notes: list[str] = field(default_factory=list)

    def to_event(self) -> Packing:
        return Packing(
            kept=[
                {"n": p.n, "chunk_ids": p.chunk_ids, "tokens": p.tokens, "score": round(p.score, 6), "truncated": p.truncated}
                for p in self.kept
            ],
            dropped=self.dropped,
            prompt_tokens=self.prompt_tokens,
            max_new_tokens=self.max_new_tokens,
            window=self.window,
            limit=self.limit,
            bare_tokens=self.bare_tokens,
            notes=self.notes,
        )


def block_of(p: Passage, n: int, lang: str) -> str:
    return passage_block(n, p.text, p.filename, p.page, lang)


def sentence_boundaries(text: str) -> list[int]:
    """Offsets just after each sentence end, ascending, excluding len(text)."""
    cuts = sorted({m.end() for m in PACK_SENTENCE_END.finditer(text)})
    return [c for c in cuts if 0 < c < len(text)]


def cut_passage(p: Passage, at: int) -> Passage:
    text = p.text[:at].rstrip()
    spans = [ChunkSpan(s.chunk_id, s.start, min(s.end, len(text)), s.page, s.retrieved) for s in p.spans if s.start < len(text)]
    if not spans:
        spans = [replace(p.spans[0], start=0, end=len(text))]
    kept_ids = {s.chunk_id for s in spans}
    return replace(p, text=text, spans=spans, truncated=True, char_end=p.char_start + len(text),
                   chunks=[c for c in p.chunks if c.chunk_id in kept_ids])


def truncate_to_fit(p: Passage, fits: Callable[[Passage], bool]) -> tuple[Passage | None, str]:
    """Longest prefix of `p` ending at a sentence boundary for which `fits` holds; else a hard cut."""
    bounds = sentence_boundaries(p.text)
    lo, hi, best = 0, len(bounds) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        cand = cut_passage(p, bounds[mid])
        if cand.text and fits(cand):
            best, lo = cand, mid + 1
        else:
            hi = mid - 1
    if best is not None:
        return best, f"truncated at a sentence boundary to {len(best.text)} of {len(p.text)} characters"
    lo, hi = 1, len(p.text) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        cand = cut_passage(p, mid)
        if cand.text and fits(cand):
            best, lo = cand, mid + 1
        else:
            hi = mid - 1
    if best is not None:
        return best, f"hard cut to {len(best.text)} of {len(p.text)} characters (no sentence boundary fits)"
    return None, "does not fit even truncated"


def pack(
    passages: list[Passage],
    question: str,
    lang: str,
    llm: LLM,
    *,
    window: int,
    max_new_tokens: int,
    prompt_budget: int | None = None,
    max_context_tokens: int | None = None,
    messages_fn: MessagesFn = answer_messages,
) -> PackResult:
    """Pack `passages` (most valuable first) into `messages_fn(blocks, question, lang)`, within the
    window, the prompt budget and, with `max_context_tokens`, that many tokens of passages."""
    budget = prompt_budget if prompt_budget is not None else 1 << 60
    notes: list[str] = []

    def messages(ps: list[Passage]) -> list[dict]:
        return messages_fn([block_of(p, i + 1, lang) for i, p in enumerate(ps)], question, lang)

    bare = llm.prompt_tokens(messages([]))
    max_new = max_new_tokens
    if bare + max_new > window:
        room = window - bare
        if room < MIN_ANSWER_TOKENS:
            raise QuestionTooLong(
                f"the question needs {bare} prompt tokens; with at least {MIN_ANSWER_TOKENS} answer tokens that "
                f"exceeds the {window}-token context window"
            )
        notes.append(f"answer room reduced from {max_new} to {room} tokens to fit the {window}-token window")
        max_new = room
    limit = min(window - max_new, budget)
    if max_context_tokens is not None and bare + max_context_tokens < limit:
        limit = bare + max_context_tokens
        notes.append(f"passages capped at {max_context_tokens} tokens (max_context_tokens)")
    if bare > limit:
        return PackResult([], [{"chunk_ids": p.chunk_ids, "reason": "prompt budget: not even the bare prompt fits"} for p in passages],
                          messages([]), bare, max_new, limit, window, bare, fits=False,
                          notes=[*notes, f"bare prompt {bare} tokens > prompt budget {budget}"])
    space = limit - bare
    sep = llm.count_tokens("\n\n")

    def exact_fits(ps: list[Passage]) -> bool:
        return llm.prompt_tokens(messages(ps)) <= limit

    kept: list[Passage] = []
    dropped: list[dict] = []
    used = 0
    for p in passages:
        est = llm.count_tokens(block_of(p, len(kept) + 1, lang)) + sep
        if used + est <= space:
            kept.append(p)
            used += est
            continue
        if not kept:
            cut, how = truncate_to_fit(p, lambda c: exact_fits([c]))
            if cut is not None:
                kept.append(cut)
                used += llm.count_tokens(block_of(cut, 1, lang)) + sep
                notes.append(f"passage with chunks {p.chunk_ids}: {how}")
                continue
            dropped.append({"chunk_ids": p.chunk_ids, "tokens": est, "score": round(p.score, 6), "reason": f"alone it does not fit the {space} tokens available ({how})"})
            continue
        dropped.append({
            "chunk_ids": p.chunk_ids,
            "tokens": est,
            "score": round(p.score, 6),
            "reason": f"budget: needs {est} tokens, {space - used} of {space} left after more valuable passages",
        })

    total = llm.prompt_tokens(messages(kept))
    while total > limit and kept:
        if len(kept) > 1:
            last = kept.pop()
            dropped.append({"chunk_ids": last.chunk_ids, "score": round(last.score, 6),
                            "reason": f"exact prompt count {total} > limit {limit}: least valuable kept passage dropped"})
        else:
            only = kept.pop()
            cut, how = truncate_to_fit(only, lambda c: exact_fits([c]))
            if cut is not None:
                kept.append(cut)
                notes.append(f"passage with chunks {only.chunk_ids}: {how} (exact count {total} > {limit})")
            else:
                dropped.append({"chunk_ids": only.chunk_ids, "score": round(only.score, 6), "reason": f"exact prompt count over limit {limit}; {how}"})
        total = llm.prompt_tokens(messages(kept))

    final: list[Passage] = []
    for i, p in enumerate(kept):
        q = replace(p, n=i + 1)
        q.tokens = llm.count_tokens(block_of(q, q.n, lang))
        final.append(q)
    msgs = messages(final)
    return PackResult(final, dropped, msgs, total, max_new, limit, window, bare, notes=notes)


__all__ = ["pack", "PackResult", "truncate_to_fit", "sentence_boundaries", "MIN_ANSWER_TOKENS"]
