"""The one settings object. Every knob lives here, read from `RAG_*` variables or an optional `.env`.

The README's settings table is generated from this class (`rag settings --markdown`), so a field's
description is what users read.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    # Where things live
    data_dir: Path = Field(PROJECT_ROOT / "data" / "state", description="Runtime state: SQLite database, indexes, uploads.")
    model_cache_dir: Path | None = Field(None, description="Prepared models; defaults to `<data_dir>/models`.")

    # Store and deployment
    database_url: str = Field("", description="Empty: the embedded store (SQLite + FAISS + BM25 under `RAG_DATA_DIR`). `postgresql://user:pass@host/db`: PostgreSQL with pgvector is the source of truth for everything and serves dense and lexical search, so several `rag serve` and `rag worker` processes can share it.")
    serve_worker: bool = Field(True, description="`rag serve` also runs an ingestion worker in process; off: only `rag worker` processes ingest (Postgres deployments).")
    database_pool_size: int = Field(20, ge=2, le=1000, description="With Postgres: request threads of one `rag serve`, each holding one connection (plus ~4 for ingestion and leases); Postgres' `max_connections` must cover this for every process.")
    pg_ef_search: int = Field(200, ge=10, le=1000, description="With Postgres: pgvector's `hnsw.ef_search`, the candidates an HNSW search visits (recall against speed: `rag bench ann` measured recall@10 0.94 at 100k and 0.65 at 1M chunks with 200).")
    job_lease_s: float = Field(60.0, gt=0, description="Seconds a worker's claim on a job lasts without a heartbeat; a job whose worker died is claimed again after it (Postgres).")
    server_lease_s: float = Field(30.0, gt=0, description="Seconds a process answering questions (`rag serve`, `rag ask`, ...) stays alive without a heartbeat (it beats 4 times per lease); after it another process closes its running questions as `interrupted`, their model calls kept in the ledger. On one machine (the embedded store) a process found gone is not waited for.")
    faiss_index: Literal["auto", "flat", "ivf", "hnsw"] = Field("auto", description="FAISS index type of the embedded store: `auto` (exact `flat` below `RAG_FAISS_APPROX_FROM` chunks in a collection, approximate above), `flat`, `ivf`, `hnsw`.")
    faiss_approx_from: int = Field(200_000, ge=1, description="Chunks in a collection from which `RAG_FAISS_INDEX=auto` uses the approximate index.")

    # Server
    host: str = Field("127.0.0.1", description="Address `rag serve` binds to.")
    port: int = Field(8000, description="Port `rag serve` listens on.")

    # Models
    embedder: str = Field("multilingual-e5-small", description="Embedder: a registry name (`rag models list`), a local folder, or a hub id already in the local HF cache.")
    generator: str = Field("qwen2.5-coder-1.5b-instruct", description="Generator: a registry name (`qwen2.5-coder-1.5b-instruct`, default; `qwen2.5-coder-0.5b-instruct` for small or non-bf16 CPUs), a local HF folder, or a hub id already in the local HF cache.")
    generator_mode: Literal["auto", "fp32", "bf16", "int8-dynamic"] = Field("auto", description="Generator execution mode: `auto` (`bf16` on CPUs with native bf16, AVX512-BF16 or AMX, else `fp32`), `fp32` (exact dequantized weights), `bf16` (same answers on our checks, ~1.9x prefill), `int8-dynamic` (Linear layers quantized at load: fastest, answers change).")
    generator_runtime: Literal["auto", "transformers", "llamacpp", "openvino", "openai"] = Field("auto", description="Generator runtime: `auto` (the fastest measured on this CPU class for a packaged GGUF generator: `openvino` on CPUs with AMX or AVX512-VNNI, `llamacpp` on AVX2-only CPUs; `transformers` for a local folder, when the engine is missing, or for a generator whose int8 OpenVINO weights measured less accurate (the 0.5B); `/health` says what it picked), `transformers` (the GGUF dequantized into a torch folder, run in `RAG_GENERATOR_MODE`), `openvino` (the GGUF converted once to an OpenVINO model with int8 weights, run by OpenVINO GenAI with prefix caching; `RAG_GENERATOR_MODE` does not apply), `llamacpp` (the packaged Q4 GGUF run as shipped by llama.cpp through xllamacpp; `RAG_GENERATOR_MODE` does not apply, threads follow `RAG_THREADS`) or `openai` (any OpenAI-compatible server at `RAG_GENERATOR_URL`: vLLM, llama.cpp's server, Ollama, TGI).")
    generator_url: str = Field("", description="Base URL of the OpenAI-compatible server for `RAG_GENERATOR_RUNTIME=openai`, e.g. `http://gpu-box:8080/v1`.")
    generator_api_key: str = Field("", description="Bearer key sent to `RAG_GENERATOR_URL` (empty: none).")
    generator_model: str = Field("", description="Model name sent to `RAG_GENERATOR_URL` (empty: the server's first listed model).")
    generator_timeout_s: float = Field(120.0, gt=0, description="Seconds without a byte from the generator server before a call fails with `generator_unavailable`.")
    embedder_url: str = Field("", description="Base URL of an OpenAI-compatible `/v1/embeddings` server; empty: embed in process. The model name sent is `RAG_EMBEDDER`.")
    embedder_api_key: str = Field("", description="Bearer key sent to `RAG_EMBEDDER_URL` (empty: none).")
    max_concurrent_questions: int = Field(4, ge=1, description="Questions answered at the same time with a server runtime (`openai`); the in-process runtimes answer one at a time.")
    embedder_query_prefix: str = Field("", description="Query prefix for an embedder given by path or hub id (registry models know theirs).")
    embedder_passage_prefix: str = Field("", description="Passage prefix for an embedder given by path or hub id.")
    verify_models_on_load: bool = Field(True, description="Re-check prepared model files' sha256 before loading them (a file whose size, times and inode are what the last full check recorded is not re-read; `rag models verify` reads every file).")
    embed_batch_size: int = Field(32, description="Texts per embedder batch.")
    ingest_workers: int = Field(2, ge=1, le=16, description="Ingestion jobs one process runs at once (worker threads; with Postgres, claim loops). They take turns at the embedder batch by batch, so a large document slows a small upload rather than stopping it.")
    embed_precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="Embedder arithmetic: `bf16` casts the transformer once at load (pooling stays fp32; cosine to fp32 vectors >= 0.9999; 2.4-3.3x the tokens/s on an AVX512-BF16 CPU, `rag bench embed`), `fp32` exact, `auto` bf16 only on CPUs with native bf16 (AVX512-BF16 or AMX). Vectors of either mix in one index.")
    ingest_embed_process: bool = Field(True, description="Embed ingested documents in a child process at a lower CPU priority (`RAG_INGEST_NICENESS`), so searches and questions are served first while documents are ingested (costs one more copy of the embedder in memory); off: the server's own embedder, shared with searches.")
    ingest_niceness: int = Field(10, ge=0, le=19, description="`nice` increment of the ingestion embedding process (0-19; higher yields the CPU to searches more readily).")
    threads: int = Field(0, description="Torch intra-op threads; 0 means one per CPU core.")
    load_generator: bool = Field(True, description="Load the generator at server start (off for ingestion-only deployments).")

    # Generation and context
    context_window: int = Field(2048, description="Tokens the answering prompt plus answer may use (generator tokens).")
    max_answer_tokens: int = Field(256, description="Most tokens generated for an answer.")
    history_tokens: int = Field(384, ge=0, description="Most tokens of a conversation's earlier turns (questions and answers, newest first) in the answering and condensing prompts (generator tokens); 0: follow-ups are still condensed from the last turn, answers see no history.")
    max_context_tokens: int = Field(768, ge=1, description="Most passage tokens in the answering prompt (generator tokens); the window may allow more. 768: the knee measured on the factoid set with the 1.5B (accuracy held from 1,024, fell 6-10 points at 512 and 384; see the README).")

    # Ingestion
    chunk_tokens: int = Field(256, description="Hard cap of a chunk, in the embedder's own tokens.")
    chunk_overlap_tokens: int = Field(0, description="Tokens repeated from the previous chunk (0 disables overlap).")
    window_tokens: int = Field(128, ge=0, description="Chunks longer than this are embedded as sentence-aware windows of at most this many embedder tokens: the chunk's vector is their mean and its dense score also counts its best window (0: one vector per chunk).")
    max_upload_bytes: int = Field(50 * 1024 * 1024, description="Largest accepted file.")
    max_pdf_pages: int = Field(2000, description="Most pages accepted in one PDF.")
    parse_cpu_seconds: int = Field(120, description="CPU-time limit of the parsing subprocess (PDF and every other format).")
    parse_memory_mb: int = Field(1024, description="Address-space limit of the parsing subprocess.")
    parse_wall_seconds: int = Field(180, description="Wall-clock limit of the parsing subprocess.")
    max_archive_members: int = Field(10_000, description="Most members in the ZIP container of a DOCX/XLSX/PPTX/EPUB "
                                                         "(a ZIP bomb's other half).")
    max_archive_bytes: int = Field(300 * 1024 * 1024, description="Most bytes a DOCX/XLSX/PPTX/EPUB may unpack to "
                                                                  "(all members, as their headers declare; a member that lies is stopped by the parse memory limit).")
    max_sheet_rows: int = Field(100_000, description="Most rows read from one spreadsheet or CSV, empty ones counted.")
    max_attachments: int = Field(100, description="Most attachments read from one e-mail, all levels together.")
    max_attachment_depth: int = Field(3, description="Deepest e-mail attached inside e-mails that is read.")
    max_image_pixels: int = Field(40_000_000, description="Largest image read by OCR, in pixels (checked before "
                                                          "decoding: a decompression bomb is refused unread).")
    max_ocr_pages: int = Field(50, description="Most pages (TIFF frames, scanned PDF pages) read by OCR in one document.")
    max_ocr_seconds: int = Field(300, description="Wall-clock limit of OCR for one document.")
    ocr_scanned_pdfs: bool = Field(True, description="Read a PDF without any text layer (a scan) by OCR of its page "
                                                     "images; off: such a PDF is `pdf_no_text`.")
    ocr_memory_mb: int = Field(3072, description="Address-space limit of the parsing subprocess when it runs OCR "
                                                 "(onnxruntime reserves far more address space than it touches).")
    max_document_chars: int = Field(5_000_000, ge=1, description="Most characters of text in one document after parsing (~1,500 pages of prose; the largest Debian reference manual has ~0.9 M); more fails the job with `document_too_long`.")
    max_document_chunks: int = Field(20_000, ge=1, description="Most chunks one document may make; more fails the job with `too_many_chunks` before any embedding.")
    max_embed_seconds: float = Field(900.0, gt=0, description="Wall-clock limit for embedding one document; over it the job fails with `embed_time_limit`, so one document cannot hold the worker.")
    max_queued_jobs: int = Field(1000, ge=1, description="Most ingestion jobs waiting in the queue; an upload that would exceed it gets 429 `queue_full` with `Retry-After`.")

    # Budgets per question: each is the default and the ceiling (a request may lower it, never raise it)
    max_model_calls: int = Field(3, ge=0, description="Most model calls per question (default and ceiling: a request asking for more gets 422 `budget_above_limit`).")
    max_prompt_tokens: int = Field(8000, ge=0, description="Most prompt tokens per question, all calls together (default and ceiling).")
    max_rounds: int = Field(2, ge=1, description="Most retrieval rounds per question (default and ceiling).")
    timeout_s: float = Field(60.0, gt=0, description="Wall-clock budget per question (default and ceiling).")

    # Access
    auth: Literal["on", "off"] = Field("on", description="`on`: every `/v1` request needs `Authorization: Bearer <key>`; `off`: no keys at all (a trusted single-user setup; the server logs a warning).")
    admin_key: str | None = Field(None, description="The admin key to accept; default: one is generated at first start and written to `<data_dir>/admin.key` (mode 0600).")
    allowed_hosts: str = Field("", description="Comma-separated `Host` header values the server answers (DNS-rebinding guard); default: the bind address, `localhost`, `127.0.0.1`, `::1`. `*` allows any.")
    cors_origins: str = Field("", description="Comma-separated browser origins allowed to call the API (CORS); empty: none, and state-changing requests from another origin are refused.")

    # Limits per key (a key's requests, model calls, uploads)
    requests_per_minute: int = Field(600, ge=1, description="Requests per key per minute (429 with `Retry-After` above it).")
    model_calls_per_minute: int = Field(60, ge=1, description="Model calls per key per minute, all its questions together.")
    questions_in_flight: int = Field(2, ge=1, description="Questions one key may have running at once.")
    upload_bytes_per_minute: int = Field(200 * 1024 * 1024, ge=1, description="Uploaded bytes per key per minute.")
    max_files_per_request: int = Field(100, ge=1, description="Files in one upload request.")
    max_json_bytes: int = Field(1024 * 1024, ge=1024, description="Largest non-upload request body, enforced while it is received, before it is parsed.")
    max_request_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Largest upload request body (all its files together), enforced while it is received.")

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "rag.sqlite3"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"

    def host_allow_list(self) -> list[str]:
        given = [h.strip() for h in self.allowed_hosts.split(",") if h.strip()]
        return given or list(dict.fromkeys([self.host, "localhost", "127.0.0.1", "::1", "[::1]"]))

    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
