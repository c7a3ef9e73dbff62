"""The answer against its passages: cleaned (citation markers, links not in the passages, echoed
instructions, captions, script), its figures completed from the passages, each sentence attributed
(`rag.ask.cite`), and accepted with citations or refused.

Word overlap cannot check every answer: an answer that translates its context, or is too short to
judge ("可以。", "Yes."), is returned uncited (`unverified`) when the retrieval evidence was sufficient
and no sentence was dropped for a figure in no passage.

An answer call that was cut (`cut`: the deadline, or the answer's token limit) never passes for a whole
answer: its unfinished last sentence is removed before attribution, and after a deadline only the
sentences the passages support are kept (no uncited fallback); with nothing left it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rag.ask.cite import (
    SentenceSupport,
    attribute,
    citations_for,
    names_subject,
    render_answer,
    restates_question,
    unfinished_tail,
)
from rag.ask.config import AskOptions
from rag.ask.events import Attribution, IncompleteReason, Postprocess, SupportDecision
from rag.ask.figures import complete as complete_figures
from rag.ask.figures import figures_in
from rag.ask.pack import PackResult
from rag.ask.post import (
    injected_codes,
    is_abstention,
    link_allowlist,
    mask_injections,
    strip_captions,
    strip_citation_markers,
    strip_injected_codes,
    strip_instructions,
    strip_links,
    to_question_script,
)
from rag.ask.question import Question
from rag.ask.terms import KeyTerms
from rag.ask.trace import Trace
from rag.ask.types import Citation
from rag.text.lang import base, detect_language


@dataclass(frozen=True)
class Accepted:
    answer: str  # final: cleaned, with citation markers when the options ask for them
    citations: list[Citation]
    support: dict  # {"sentences", "supported", "method"}


@dataclass(frozen=True)
class Refused:
    reason: str
    supports: list[SentenceSupport] | None = None  # the attributed sentences, when it came to that


def subjects(question: Question, rewrite_terms: list[tuple[str, KeyTerms]]) -> list[str]:
    """Folded names the question is about: its own entities and those of its translations."""
    out = list(question.key_terms.entities)
    for phrase, kt in rewrite_terms:
        if base(detect_language(phrase)) != base(question.lang):
            out += [e for e in kt.entities if e not in out]
    return out


class AnswerCheck:
    def __init__(self, question: Question, options: AskOptions, trace: Trace):
        self.q = question
        self.opt = options
        self.th = options.thresholds
        self.trace = trace

    def check(self, raw: str, pr: PackResult, *, subjects: list[str], evidence: str | None,
              cut: IncompleteReason | None = None) -> Accepted | Refused:
        """`raw`: the model's output for the packed prompt `pr`; `subjects`: see `subjects()`;
        `evidence`: the retrieval verdict the answer was asked on; `cut`: why the answer call was cut, if it was."""
        text, echoed, codes, captions, repaired = self._clean(raw, pr)
        removed: list[str] = []
        if cut is not None:
            end = unfinished_tail(text)
            if text[end:].strip():
                removed.append(text[end:].strip())
            text = text[:end]
            if not text.strip():
                self._emit_cut(cut, removed)
                return Refused(f"the answer was cut ({_CUT_WORDS[cut]}) before its first sentence ended")
        if not text.strip():
            what = ("the prompt's own instructions" if echoed else "a code an injected passage asked for" if codes
                    else "a caption or table rule" if captions else None)
            return Refused(f"the model returned only {what}" if what else "the model returned no answer text")
        if restates_question(text, self.q.text):
            return Refused("the model's answer only restates the question" + (" (and the prompt's instructions)" if echoed else ""))
        # The model followed an injection (it wrote a code only the injection introduced): what is left of
        # its answer is checked against the passages without their injection-like sentences.
        checked = [replace(p, text=mask_injections(p.text)) for p in pr.kept] if codes else pr.kept
        supports = attribute(text, checked, self.th, question=self.q.text, subjects=subjects,
                             markers=subjects + [n for n in self.q.key_terms.numbers if n not in subjects],
                             repaired=repaired)
        model_abstained = False
        for ss in supports:
            if is_abstention(ss.text):
                ss.supported, ss.dropped, ss.method, ss.reason = None, False, "none", "the model says the documents do not answer"
                model_abstained = True
        if cut == "timeout_s":
            for ss in supports:
                if not ss.supported and not ss.dropped:
                    ss.dropped, ss.reason = True, "the answer was cut at the deadline: only supported sentences are kept"
                    removed.append(ss.text)
        n_supported = sum(1 for s in supports if s.supported)
        self.trace.emit(Attribution(sentences=[s.to_dict() for s in supports]))
        if cut is not None:
            self._emit_cut(cut, removed)
        if n_supported == 0:
            if cut == "timeout_s":
                return Refused("the answer was cut at the deadline and no whole supported sentence remains", supports)
            if model_abstained:
                return Refused("the model said the documents do not answer the question", supports)
            why = self._unverifiable(text, supports, pr, subjects)
            if why is not None and evidence == "sufficient" and not any(s.dropped for s in supports):
                self.trace.emit(SupportDecision(verdict="unverified",
                                                reason=f"{why}, retrieval evidence sufficient -> answer without citations"))
                final = render_answer(text, supports, {}, markers=False)
                return Accepted(final, [], {"sentences": len(supports), "supported": 0, "dropped": 0,
                                            "method": "unverified", "why_unverified": why})
            return Refused(f"none of {len(supports)} answer sentence(s) is supported by the passages", supports)
        cits, s2n = citations_for(supports, pr.kept)
        final = render_answer(text, supports, s2n, markers=self.opt.inline_citations)
        methods = sorted({s.method for s in supports if s.supported})
        dropped = [s.text for s in supports if s.dropped and s.text not in removed]
        if dropped:
            self.trace.emit(SupportDecision(verdict="drop", reason=f"removed {len(dropped)} sentence(s) with numbers in no passage",
                                            sentences=dropped))
        return Accepted(final, cits, {"sentences": len(supports), "supported": n_supported,
                                      "dropped": sum(1 for s in supports if s.dropped), "method": "+".join(methods)})

    def _emit_cut(self, cut: IncompleteReason, removed: list[str]) -> None:
        self.trace.emit(SupportDecision(
            verdict="cut", sentences=removed,
            reason=f"the answer call was cut ({_CUT_WORDS[cut]}): removed {len(removed)} unfinished or unsupported "
                   f"sentence(s) -> the answer is marked incomplete"))

    def _clean(self, raw: str, pr: PackResult) -> tuple[str, list[str], list[str], list[str], list[str]]:
        """(cleaned text, echoed instructions removed, injected codes removed, captions removed, figures as
        repaired); the `postprocess` event says all (codes among `removed_instructions`)."""
        text, markers = strip_citation_markers(raw)
        allowed, untrusted = link_allowlist([p.text for p in pr.kept])
        text, links = strip_links(text, allowed)
        text, codes = strip_injected_codes(text, injected_codes([f"{p.filename}\n{p.text}" for p in pr.kept], self.q.text))
        text, echoed = strip_instructions(text)
        text, captions = strip_captions(text)
        text, repairs = complete_figures(text, [(p.n, p.text) for p in pr.kept], self.q.lang)
        converted = to_question_script(text, self.q.lang) if base(self.q.lang) == "zh" else text
        script_changed = converted != text
        text = converted
        self.trace.emit(Postprocess(removed_markers=markers, removed_links=links, removed_instructions=codes + echoed,
                                    removed_captions=captions,
                                    figures=[r.to_dict() for r in repairs],
                                    untrusted_passages=[pr.kept[i].n for i in untrusted],
                                    script=self.q.lang if script_changed else None))
        return text, echoed, codes, captions, [to_question_script(r.after, self.q.lang) if script_changed else r.after
                                        for r in repairs]

    def _unverifiable(self, text: str, supports: list[SentenceSupport], pr: PackResult, subjects: list[str]) -> str | None:
        """Why word overlap cannot check this answer, if it cannot: the answer is a translation of the
        context, or every sentence is too short to judge ("可以。", "stable", "Yes.")."""
        # The language of the context as a whole: one passage of commands or package names inside a
        # Chinese document reads as English on its own.
        ctx_lang = base(detect_language("\n".join(p.text for p in pr.kept)))
        answer_lang = base(detect_language(text))
        q_lang = base(self.q.lang)
        if answer_lang == q_lang and ctx_lang != q_lang:
            if subjects and figures_in(text) and not any(names_subject(p.text, subjects) for p in pr.kept):
                self.trace.emit(SupportDecision(verdict="unsupported",
                                                reason=f"a figure across languages, and no passage names the question's subject ({', '.join(subjects[:4])})"))
                return None
            return (f"question and answer in {answer_lang}, passages in {ctx_lang}: word overlap "
                    f"cannot check a translation")
        if supports and all(s.supported is None for s in supports):
            return "every answer sentence is too short to check by word overlap (a yes/no or one-word answer)"
        return None


_CUT_WORDS: dict[str, str] = {"timeout_s": "the question's deadline", "max_answer_tokens": "the answer's token limit"}
