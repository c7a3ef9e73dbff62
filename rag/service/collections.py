"""Collections and what they hold: create, list, delete; documents and their chunks.

Deletes go through the index manager, which commits to SQLite first and then updates the derived
indexes (`rag.index.manager`). Reads name what is missing: the collection first, then the document.
"""

from __future__ import annotations

import dataclasses

from rag import store
from rag.errors import NotFound
from rag.index.manager import IndexManager
from rag.store import ThreadConnections


class CollectionService:
    def __init__(self, db: ThreadConnections, index: IndexManager):
        self.db = db
        self.index = index

    def create(self, name: str, description: str = "") -> dict:
        return dataclasses.asdict(store.create_collection(self.db.get(), name, description))

    def ensure(self, name: str) -> None:
        """Creates the collection unless it exists (the CLI's and benches' `--collection`)."""
        conn = self.db.get()
        try:
            store.get_collection(conn, name)
        except NotFound:
            store.create_collection(conn, name)

    def list(self) -> list[dict]:
        return [dataclasses.asdict(c) for c in store.list_collections(self.db.get())]

    def delete(self, name: str) -> None:
        self.index.delete_collection(self.db.get(), name)

    def list_documents(self, collection: str) -> list[dict]:
        conn = self.db.get()
        store.get_collection(conn, collection)
        return [dataclasses.asdict(d) for d in store.list_documents(conn, collection)]

    def _document(self, conn, collection: str, document_id: int) -> store.DocumentRecord:
        store.get_collection(conn, collection)
        return store.get_document(conn, document_id, collection=collection)

    def get_document(self, collection: str, document_id: int) -> dict:
        conn = self.db.get()
        out = dataclasses.asdict(self._document(conn, collection, document_id))
        out["pages"] = sorted({c.page for c in store.list_chunks(conn, document_id) if c.page is not None})
        return out

    def list_chunks(self, collection: str, document_id: int) -> list[dict]:
        conn = self.db.get()
        self._document(conn, collection, document_id)
        return [dataclasses.asdict(c) for c in store.list_chunks(conn, document_id)]

    def delete_document(self, collection: str, document_id: int) -> None:
        conn = self.db.get()
        self._document(conn, collection, document_id)
        self.index.delete_document(conn, document_id)
