"""Chat in the shape OpenAI clients speak: a list of messages in, an answer with its sources out.

The last user message is the question; the user/assistant pairs before it are the conversation's
history (`rag.ask.condense`: a follow-up is condensed, earlier turns enter the answer prompt within
`RAG_HISTORY_TOKENS`). System messages are the client's own instructions to a chat model; the
collection's answering prompt is the service's, so they are not used. An assistant message that
carries a sources list we appended is read without it. Nothing here knows HTTP: `api/openai_compat.py`
writes the wire format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.ask.condense import History, Turn
from rag.errors import RagError
from rag.service.answering import Answer, AskRequest, PreparedQuestion, QuestionService
from rag.settings import Settings
from rag.text.lang import base

# The sources list appended to an answer's text, headed in the answer's language.
SOURCES_HEADER = {"en": "Sources:", "zh-Hans": "来源：", "zh-Hant": "來源："}
_PAGE = {"en": ", page {page}", "zh-Hans": "，第{page}页", "zh-Hant": "，第{page}頁"}
_SOURCES_RE = re.compile(r"\n\n(?:" + "|".join(map(re.escape, SOURCES_HEADER.values())) + r")\n.*\Z", re.DOTALL)


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "developer" | "user" | "assistant" | "tool"
    content: str


class ChatService:
    def __init__(self, settings: Settings, questions: QuestionService):
        self.settings = settings
        self.questions = questions

    def prepare(self, collection: str, messages: list[ChatMessage], *, max_tokens: int | None = None) -> PreparedQuestion:
        """The last user message as a question with the earlier turns as its history; 400
        `invalid_messages` when the conversation does not end with a user message. `max_tokens`
        lowers the answer's token limit (never above the server's)."""
        said = [m for m in messages if m.role in ("user", "assistant")]
        if not said or said[-1].role != "user":
            raise RagError("the last message must be the user's question (role \"user\")", code="invalid_messages",
                           status=400)
        options = None
        if max_tokens is not None:
            options = {"max_answer_tokens": max(1, min(int(max_tokens), self.settings.max_answer_tokens))}
        history = History(turns(said[:-1]), self.settings.history_tokens)
        return self.questions.prepare(AskRequest(collection, said[-1].content, None, options,
                                                 history=history if history.turns else None))

    @staticmethod
    def content(answer: Answer) -> str:
        """The answer's text (its [n] markers kept) and, when it cites, the sources list at its end."""
        if not answer.citations:
            return answer.answer
        lang = answer.language if answer.language in SOURCES_HEADER else ("zh-Hans" if base(answer.language) == "zh" else "en")
        lines = [SOURCES_HEADER[lang]]
        for c in answer.citations:
            page = _PAGE[lang].format(page=c.page) if c.page is not None else ""
            lines.append(f"[{c.n}] {c.filename}{page}")
        return answer.answer + "\n\n" + "\n".join(lines)


def turns(messages: list[ChatMessage]) -> tuple[Turn, ...]:
    """Earlier user/assistant messages as turns: each user message with the assistant reply that follows
    it ("" when none did), a sources list we appended removed."""
    out: list[Turn] = []
    for i, m in enumerate(messages):
        if m.role != "user" or not m.content.strip():
            continue
        reply = messages[i + 1].content if i + 1 < len(messages) and messages[i + 1].role == "assistant" else ""
        out.append(Turn(m.content.strip(), _SOURCES_RE.sub("", reply).strip()))
    return tuple(out)
