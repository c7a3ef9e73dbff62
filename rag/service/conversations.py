"""Conversations over a collection: create, read, list, delete, and prepare the next turn.

A turn is an ordinary question (`QuestionService`) asked with the conversation's earlier turns as its
`History` and the conversation as its parent, so its ledger row, calls, trace, replay and usage are
those of any question. The history is read from the ledger: each finished turn's question, its
standalone form when it was condensed, and its answer.
"""

from __future__ import annotations

import json
import uuid

from rag import store
from rag.ask.condense import History, Turn
from rag.service.answering import AskRequest, PreparedQuestion, QuestionService
from rag.settings import Settings
from rag.store import Connections
from rag.store import conversations as table

HISTORY_TURNS = 20  # turns read back at most; the token budget (RAG_HISTORY_TOKENS) cuts them further


class ConversationService:
    def __init__(self, settings: Settings, db: Connections, questions: QuestionService):
        self.settings = settings
        self.db = db
        self.questions = questions

    def create(self, collection: str, title: str = "") -> dict:
        """A new conversation in `collection` (404 `collection_not_found` when it does not exist)."""
        store.get_collection(self.db.get(), collection)
        return table.create_conversation(self.db.get(), uuid.uuid4().hex, collection, title.strip())

    def get(self, cid: str) -> dict:
        """The conversation with its turns: answers, citations, usage, each turn's question id."""
        conn = self.db.get()
        return {**table.get_conversation(conn, cid), "turns": table.turns(conn, cid)}

    def list(self, collection: str, limit: int = 50) -> list[dict]:
        store.get_collection(self.db.get(), collection)
        return table.list_conversations(self.db.get(), collection, limit=limit)

    def delete(self, cid: str) -> None:
        table.delete_conversation(self.db.get(), cid)

    def collection_of(self, cid: str) -> str:
        """The conversation's collection (404 `conversation_not_found` when there is no such conversation)."""
        return table.collection_of(self.db.get(), cid)

    def history(self, cid: str) -> History:
        rows = table.history(self.db.get(), cid, limit=HISTORY_TURNS)
        turns = tuple(Turn(r["question"], r["answer"] or "",
                           json.loads(r["result"]).get("standalone_question") if r["result"] else None) for r in rows)
        return History(turns, self.settings.history_tokens)

    def prepare(self, cid: str, question: str, budget: dict | None = None,
                options: dict | None = None) -> PreparedQuestion:
        """The conversation's next turn, checked like any question (404/422/503 before anything runs)."""
        collection = self.collection_of(cid)
        return self.questions.prepare(AskRequest(collection, question, budget, options, history=self.history(cid),
                                                 conversation=cid))
