"""Derived search indexes per collection: dense (FAISS), lexical (BM25) and their fusion.

    from rag.index import IndexManager, fuse_rrf
    manager = IndexManager.from_settings(settings)
    manager.open()                                   # verify / repair / rebuild at start-up
    hits = manager.search("default", query_vector, "query text", k=10)

`SearchIndex` is what the services use: `IndexManager` (the embedded backend) and
`rag.index.pgsearch.PgIndex` (Postgres) both satisfy it.
"""

from rag.index.fusion import RRF_K, Hit, fuse_rrf
from rag.index.manager import IndexManager
from rag.index.search_index import OpenReport, SearchIndex

__all__ = ["RRF_K", "Hit", "IndexManager", "OpenReport", "SearchIndex", "fuse_rrf"]
