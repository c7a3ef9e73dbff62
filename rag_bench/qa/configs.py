"""`rag bench qa`: the configurations it compares and the constants its run and its report share."""

from __future__ import annotations

RETRIEVAL = ("dense", "bm25", "hybrid")
LOOP = {
    "hybrid+expand": {"rewrite": False, "expand": True},
    "loop": {},
    "loop-force-rewrite": {"force_rewrite": True},
}
LLAMA_RETRIEVAL = ("li-vector",)
LLAMA_ANSWER = ("llamaindex", "li-fusion")
ALL_CONFIGS = RETRIEVAL + tuple(LOOP) + LLAMA_RETRIEVAL + LLAMA_ANSWER
ANSWERING = tuple(LOOP) + LLAMA_ANSWER
K = 10
CONTEXT_TOP = 5  # retrieval-only configs: context recall of the top chunks the loop would take (max_passages)
LI_TOP = 2  # LlamaIndex's default similarity_top_k: what its query engine packs
VARIANTS = ("noheadings", "shipped")
EQUAL_CHARS = 4000  # recall at equal reading volume: about one LlamaIndex node of English text
RATE_KEYS = ("r1", "r5", "r10", "mrr", "r_chars", "ctx_recall", "f1", "rouge_l", "cite_precision", "abstained")
