"""Derived search indexes per collection: dense (FAISS), lexical (BM25) and their fusion.

    from rag.index import IndexManager, fuse_rrf
    manager = IndexManager.from_settings(settings)
    manager.open()                                   # verify / repair / rebuild at start-up
    hits = manager.search("default", query_vector, "query text", k=10)
"""

from rag.index.fusion import RRF_K, fuse_rrf
from rag.index.manager import Hit, IndexManager, OpenReport

__all__ = ["RRF_K", "Hit", "IndexManager", "OpenReport", "fuse_rrf"]
