"""Collections and what they hold: create, list, delete; documents and their chunks.

Deletes go through the index manager, which commits to SQLite first and then updates the derived
indexes (`rag.index.manager`). Reads name what is missing: the collection first, then the document.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag import store
from rag.errors import NotFound
from rag.index.search_index import SearchIndex
from rag.store import Connection, Connections


@dataclass(frozen=True)
class DocumentDetail:
    document: store.DocumentRecord
    pages: list[int]  # pages that hold at least one chunk


class CollectionService:
    def __init__(self, db: Connections, index: SearchIndex):
        self.db = db
        self.index = index

    def create(self, name: str, description: str = "") -> store.CollectionRecord:
        return store.create_collection(self.db.get(), name, description)

    def ensure(self, name: str) -> None:
        """Creates the collection unless it exists (the CLI's and benches' `--collection`)."""
        conn = self.db.get()
        try:
            store.get_collection(conn, name)
        except NotFound:
            store.create_collection(conn, name)

    def list(self) -> list[store.CollectionRecord]:
        return store.list_collections(self.db.get())

    def delete(self, name: str) -> None:
        self.index.delete_collection(self.db.get(), name)

    def list_documents(self, collection: str) -> list[store.DocumentRecord]:
        conn = self.db.get()
        store.get_collection(conn, collection)
        return store.list_documents(conn, collection)

    def _document(self, conn: Connection, collection: str, document_id: int) -> store.DocumentRecord:
        store.get_collection(conn, collection)
        return store.get_document(conn, document_id, collection=collection)

    def get_document(self, collection: str, document_id: int) -> DocumentDetail:
        conn = self.db.get()
        doc = self._document(conn, collection, document_id)
        return DocumentDetail(doc, sorted({c.page for c in store.list_chunks(conn, document_id) if c.page is not None}))

    def list_chunks(self, collection: str, document_id: int) -> list[store.ChunkRecord]:
        conn = self.db.get()
        self._document(conn, collection, document_id)
        return store.list_chunks(conn, document_id)

    def chunk_context(self, collection: str, chunk_id: int, neighbours: int = 1) -> store.ChunkContext:
        """A chunk with `neighbours` chunks of its document on each side (a citation shown in context)."""
        conn = self.db.get()
        store.get_collection(conn, collection)
        return store.chunk_context(conn, chunk_id, collection=collection, neighbours=neighbours)

    def delete_document(self, collection: str, document_id: int) -> None:
        conn = self.db.get()
        self._document(conn, collection, document_id)
        self.index.delete_document(conn, document_id)
