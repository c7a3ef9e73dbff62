"""What is asked, read once at the start: every step of the loop needs the same facts about it."""

from __future__ import annotations

from dataclasses import dataclass

from rag.ask import prompts
from rag.ask.config import AskOptions
from rag.ask.ports import LLM, Retriever
from rag.ask.terms import KeyTerms, extract_key_terms
from rag.text.lang import base, detect_language


@dataclass(frozen=True)
class Question:
    """The question, its language, the languages of the collection it is asked of, its key terms, and
    the context window its answer must fit (the options' window, or less when the model attends to less)."""

    text: str
    lang: str
    collection_langs: frozenset[str]
    key_terms: KeyTerms
    window: int
    history: tuple[dict, ...] = ()  # a conversation's earlier turns for the answering prompt (within their budget)

    @classmethod
    def read(cls, text: str, retriever: Retriever, llm: LLM, options: AskOptions, *, lang: str | None = None,
             history: tuple[dict, ...] = ()) -> "Question":
        """`lang`: the language to answer in when `text` is a condensed follow-up (the user's, not the
        rewrite's script)."""
        lang = lang or detect_language(text)
        try:
            langs = {base(l) for l in (retriever.languages() or set())} & {"zh", "en"}
        except Exception:  # a retriever without language stats: assume the question's
            langs = set()
        ctx_len = llm.context_length
        window = min(options.context_window, int(ctx_len)) if ctx_len else options.context_window
        return cls(text, lang, frozenset(langs or {base(lang)}), extract_key_terms(text, lang), window, history)

    def answer_messages(self, blocks: list[str], question: str, lang: str) -> list[dict]:
        """The answering prompt with this question's history (`rag.ask.pack`'s `messages_fn`)."""
        return prompts.answer_messages(blocks, question, lang, self.history)

    def bare_answer_messages(self) -> list[dict]:
        """The answering prompt without passages: what the answer costs at the least."""
        return self.answer_messages([], self.text, self.lang)
