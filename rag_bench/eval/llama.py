"""LlamaIndex baseline for `rag bench qa`, on the same models, documents, window and decoding.

Thin LlamaIndex adapters over this project's loaded models instead of LlamaIndex's Hugging Face
integrations: `OurLLM` (a `CustomLLM`) delegates to our `Generator` (same weights, same chat template,
same greedy decoding, same `max_new_tokens`) and counts calls and tokens exactly; `OurEmbedding` (a
`BaseEmbedding`) delegates to our `Embedder`, which adds the same `query: ` / `passage: ` prompts that
`HuggingFaceEmbedding(query_instruction=..., text_instruction=...)` would. Everything else is LlamaIndex's
own defaults: `SentenceSplitter` (1024 tokens, 200 overlap), `VectorStoreIndex` over a FAISS inner-product
index, `as_query_engine()` (top-2, `compact` response mode), and for the query-rewriting baseline its
`QueryFusionRetriever` (vector + BM25, 4 queries = the question + 3 generated, reciprocal-rank fusion) as
in LlamaIndex's own hybrid-retrieval example. LlamaIndex's global tokenizer is set to the generator's
(its default, tiktoken cl100k, downloads its encoding file at run time).

Only imported by the benchmark: LlamaIndex is the optional `bench` extra, never needed by the service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence


def available() -> tuple[bool, str]:
    try:
        import llama_index.core  # noqa: F401
        import llama_index.retrievers.bm25  # noqa: F401
        import llama_index.vector_stores.faiss  # noqa: F401
    except ImportError as exc:
        return False, f"LlamaIndex is not installed ({exc}); install the bench extra: pip install -e '.[bench]'"
    return True, ""


@dataclass
class CallLog:
    calls: list[dict] = field(default_factory=list)

    def mark(self) -> int:
        return len(self.calls)

    def since(self, mark: int) -> list[dict]:
        return self.calls[mark:]


def _classes():
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse, LLMMetadata
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback

    class OurLLM(CustomLLM):
        context_window: int = 2048
        num_output: int = 256
        model_name: str = "generator"
        _gen: Any = PrivateAttr()
        _log: Any = PrivateAttr()

        def __init__(self, generator, log: CallLog, **kw):
            super().__init__(**kw)
            self._gen = generator
            self._log = log

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=self.context_window, num_output=self.num_output,
                               model_name=self.model_name, is_chat_model=True)

        def _run(self, messages: list[dict], purpose: str):
            c = self._gen.generate(messages, max_new_tokens=self.num_output)
            self._log.calls.append({"purpose": purpose, "prompt_tokens": c.prompt_tokens,
                                    "completion_tokens": c.completion_tokens, "seconds": c.wall_ms / 1000.0})
            return c.text

        @llm_chat_callback()
        def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
            msgs = [{"role": str(getattr(m.role, "value", m.role)), "content": m.content or ""} for m in messages]
            text = self._run(msgs, "chat")
            return ChatResponse(message=ChatMessage(role="assistant", content=text))

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text=self._run([{"role": "user", "content": prompt}], "complete"))

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
            text = self.complete(prompt, formatted=formatted).text
            yield CompletionResponse(text=text, delta=text)

    class OurEmbedding(BaseEmbedding):
        _emb: Any = PrivateAttr()

        def __init__(self, embedder, **kw):
            super().__init__(model_name=str(embedder.model_id), embed_batch_size=embedder.batch_size, **kw)
            self._emb = embedder

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._emb.embed_queries([query])[0].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._emb.embed_passages([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._emb.embed_passages(texts).tolist()

    return OurLLM, OurEmbedding


class LlamaBaseline:
    """One LlamaIndex setup: models wrapped once, one index per document."""

    def __init__(self, generator, embedder, *, context_window: int, max_new_tokens: int):
        from llama_index.core import Settings as LISettings

        OurLLM, OurEmbedding = _classes()
        self.log = CallLog()
        self.llm = OurLLM(generator, self.log, context_window=context_window, num_output=max_new_tokens,
                          model_name=str(generator.model_id))
        self.embed_model = OurEmbedding(embedder)
        tok = generator.tokenizer
        LISettings.tokenizer = lambda text: tok(text, add_special_tokens=False)["input_ids"]
        LISettings.llm = self.llm
        LISettings.embed_model = self.embed_model
        LISettings.context_window = context_window
        LISettings.num_output = max_new_tokens
        self.dim = embedder.dim
        self.indexes: dict[str, Any] = {}
        self.ingest_seconds: dict[str, float] = {}

    def build(self, name: str, text: str) -> None:
        import faiss
        from llama_index.core import Document, StorageContext, VectorStoreIndex
        from llama_index.vector_stores.faiss import FaissVectorStore

        t0 = time.monotonic()
        store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(self.dim))
        ctx = StorageContext.from_defaults(vector_store=store)
        doc = Document(text=text, id_=name, metadata={"file_name": name})
        self.indexes[name] = VectorStoreIndex.from_documents([doc], storage_context=ctx, embed_model=self.embed_model)
        self.ingest_seconds[name] = time.monotonic() - t0

    def retriever(self, name: str, k: int):
        return self.indexes[name].as_retriever(similarity_top_k=k)

    def nodes(self, name: str) -> list:
        return list(self.indexes[name].docstore.docs.values())

    def query_engine(self, name: str):
        """LlamaIndex's defaults: top-2 vector retrieval, `compact` response mode."""
        from llama_index.core.query_engine import RetrieverQueryEngine

        return RetrieverQueryEngine.from_args(self.indexes[name].as_retriever(), llm=self.llm)

    def fusion_engine(self, name: str):
        """`QueryFusionRetriever` over vector + BM25 (its hybrid example), query generation by the same LLM."""
        from llama_index.core.query_engine import RetrieverQueryEngine
        from llama_index.core.retrievers import QueryFusionRetriever
        from llama_index.retrievers.bm25 import BM25Retriever

        vec = self.indexes[name].as_retriever()
        bm25 = BM25Retriever.from_defaults(nodes=self.nodes(name))
        fusion = QueryFusionRetriever([vec, bm25], llm=self.llm, mode="reciprocal_rerank", use_async=False)
        return RetrieverQueryEngine.from_args(fusion, llm=self.llm)


def node_range(nws) -> tuple[str, int, int]:
    n = nws.node
    return (n.ref_doc_id, int(n.start_char_idx or 0), int(n.end_char_idx or 0))
