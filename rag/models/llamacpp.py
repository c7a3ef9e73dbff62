"""The answering model run by llama.cpp (through xllamacpp): the packaged GGUF as shipped, no dequantized copy.

`LlamaCppGenerator` has the interface of `rag.models.generator.Generator` that the rest of the service
uses (`model_id`, `mode`, `runtime`, `server`, `context_length`, `count_tokens`, `render`, `prompt_tokens`,
`generate`), with the same guarantees:

* prompts: `render()` applies the model's chat template with the tokenizer transformers reads from the
  GGUF (saved in the prepared folder; the same `rag.models.chat_tokens.ChatTokenizer` as `Generator`,
  so both runtimes render the same prompt text and count tokens the same way), and that exact text is
  sent to llama.cpp's completion endpoint (`handle_completions`, raw prompt, no server-side template). llama.cpp tokenizes it itself; the
  tests check its `usage.prompt_tokens` equals `prompt_tokens()` (Chinese and English), so the packing
  loop's predictions hold;
* greedy: temperature 0, top_k 1, a fixed seed; same prompt, same answer on the same machine;
* accounting from the server: `prompt_tokens`/`completion_tokens` from `usage` (a final end-of-turn
  token counts, as in `Generator`), `prefill_ms` from `timings.prompt_ms`, `cached_prompt_tokens` from
  `timings.cache_n` (llama.cpp reuses the KV cache of the longest shared prefix with the previous call);
* streaming: the completion is always streamed (`stream: true`); `on_token` gets pieces whose
  concatenation is exactly `Completion.text`. llama.cpp never sends half a UTF-8 character;
* stop strings are matched here (`rag.models.completion.TextStream`), not by llama.cpp: its streaming
  drops text it held back as a possible stop-string prefix when generation then ends by length (checked:
  10 tokens with a stop string equal to the last word + "zzz" streamed one word short). Matching with
  the same stream as `Generator` makes both runtimes stop at the same place and never stream the
  beginning of a stop string;
* ending early: xllamacpp calls our Python callback once per streamed chunk, in the calling thread,
  and a callback that returns True ends the stream; the server then cancels the request (its response
  reader is dropped), so the next call does not wait for it. A stop string or the deadline ends the
  call this way, at most one decode step after it happened. With `return_progress` llama.cpp also
  sends a chunk after each prompt batch (`n_batch`, 512 tokens here), so a deadline that passes
  during a long prefill ends the call at the next batch boundary, not after the whole prompt. When we end a stream
  early the server sends no `usage`; the counts then come from the per-token timings of the last chunk
  (`timings_per_token`: `predicted_n`, `prompt_n + cache_n`), which are the server's counts too.

Thread-safety: one generation at a time (a lock, like `Generator`); tokenizer helpers need no lock.

Context: llama.cpp allocates the KV cache for `n_ctx` tokens at load. The GGUF's trained context is
32,768 tokens for Qwen2.5 (1.5B: 28 layers x 2 KV heads x 128 x K+V x f16 = 28 KiB a token, 0.9 GiB at
32k). The service never uses more than `RAG_CONTEXT_WINDOW` (2,048 by default), so `n_ctx` defaults to
min(trained context, 4,096): the default window twice over, 112 MiB of KV cache for the 1.5B model.
`from_settings` raises it to `RAG_CONTEXT_WINDOW` when that is larger. `context_length` reports `n_ctx`
(what this instance can hold), so the packing loop's window is never larger than the real one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from rag import offline as _offline  # noqa: F401  (must run before transformers is imported)
from rag.errors import ModelError
from rag.models.chat_tokens import ChatTokenizer
from rag.models.completion import BaseGenerator, Completion, TextStream, check_fit

log = logging.getLogger(__name__)

GGUF_FILE = "model.gguf"
DEFAULT_MAX_CTX = 4096
# Flash attention and KV cache type names accepted by `load(...)` and the bench.
FLASH_ATTN = ("auto", "on", "off")
KV_TYPES = ("f16", "q8_0", "bf16", "f32")


def llamacpp_n_ctx(settings) -> int:
    """llama.cpp's KV cache size: 4,096 tokens (twice the default window), or the window if larger;
    the generator caps it at the model's trained context."""
    return max(DEFAULT_MAX_CTX, settings.context_window)


def _file_type_name(file_type: int | None) -> str:
    """`gguf-q4_k_m` from the GGUF's general.file_type (the Generator.mode of this runtime)."""
    if file_type is None:
        return "gguf"
    try:
        from gguf import LlamaFileType

        return "gguf-" + LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_").lower()
    except (ImportError, ValueError):
        return f"gguf-ftype{file_type}"


class LlamaCppGenerator(BaseGenerator):
    """A GGUF served in-process by llama.cpp, plus the tokenizer read from the same GGUF."""

    runtime = "llamacpp"

    def __init__(self, engine, tokens: ChatTokenizer, *, model_id: str, context_length: int,
                 trained_context_length: int, threads: int, mode: str, params: dict):
        self.engine = engine  # the xllamacpp.Server (llama.cpp's server loop, in this process)
        self.tokens = tokens
        self.tokenizer = tokens.tokenizer
        self.model_id = model_id
        self.mode = mode
        self.threads = threads
        self.trained_context_length = trained_context_length
        self.params = params  # the llama.cpp settings this instance was built with (for status and bench)
        self._context_length = context_length
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_settings(cls, settings, where: Path | str) -> tuple["LlamaCppGenerator", dict]:
        """The generator with `n_ctx` from `llamacpp_n_ctx`, and its status details."""
        if not Path(where).exists():
            raise ModelError(f"generator {settings.generator!r}: the llamacpp runtime needs a registry name, a "
                             "prepared llamacpp folder or a .gguf file", code="model_not_found")
        gen = cls.load(Path(where), model_id=settings.generator, threads=settings.threads,
                       n_ctx=llamacpp_n_ctx(settings))
        return gen, {"runtime": cls.runtime, "mode": gen.mode, "mode_setting": None,
                     "context_length": gen.context_length, "trained_context_length": gen.trained_context_length,
                     "llamacpp": gen.params}

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        model_id: str,
        threads: int = 0,
        n_ctx: int | None = None,
        threads_batch: int | None = None,
        n_batch: int | None = 512,
        n_ubatch: int | None = None,
        flash_attn: str = "auto",
        kv_type: str = "f16",
        warmup: bool = True,
    ) -> "LlamaCppGenerator":
        """Load a prepared llamacpp folder (`model.gguf` + tokenizer + manifest, see `rag.models.cache`),
        or a bare `.gguf` file (its tokenizer is then read from the GGUF at load).

        `threads` 0 means one per CPU core, for generation and (unless `threads_batch`) prompt batches.
        `n_ctx` None means min(trained context, 4,096). The other knobs are llama.cpp's
        (`n_batch`/`n_ubatch` prompt batch sizes, flash attention, KV cache type) for benchmarking.
        `n_batch` is 512 (llama.cpp's default 2048): the prompt is fed in batches of `n_batch` tokens and a
        deadline is checked after each, and 512 = `n_ubatch` (the size llama.cpp computes in anyway)
        measured as fast as 2048 here. The rest are llama.cpp's own defaults (see `rag bench models
        --llamacpp-sweep`).
        """
        import xllamacpp as xlc

        from rag.models.gguf_build import gguf_metadata

        folder = Path(folder)
        bare = folder.is_file() and folder.suffix == ".gguf"
        gguf = folder if bare else folder / GGUF_FILE
        if not gguf.is_file():
            raise ModelError(f"{folder} is not a prepared llamacpp model folder (no {GGUF_FILE}); "
                             "run `rag models prepare NAME --runtime llamacpp`", code="model_not_prepared")
        if flash_attn not in FLASH_ATTN:
            raise ValueError(f"flash_attn must be one of {FLASH_ATTN}, got {flash_attn!r}")
        if kv_type not in KV_TYPES:
            raise ValueError(f"kv_type must be one of {KV_TYPES}, got {kv_type!r}")

        meta = None
        manifest = folder / "manifest.json"
        if not bare and manifest.is_file():
            import json

            meta = json.loads(manifest.read_text()).get("gguf")
        if not meta:
            meta = gguf_metadata(gguf)
        trained = int(meta["context_length"])
        ctx = min(trained, DEFAULT_MAX_CTX) if not n_ctx else min(int(n_ctx), trained)

        tokens = ChatTokenizer.load(folder)

        n = threads if threads and threads > 0 else (os.cpu_count() or 1)
        nb = threads_batch if threads_batch and threads_batch > 0 else n
        p = xlc.CommonParams()
        p.model.path = str(gguf)
        p.n_ctx = ctx
        p.n_parallel = 1  # one slot: generations are serialised anyway, and its KV cache is reused across calls
        p.cpuparams.n_threads = n
        p.cpuparams_batch.n_threads = nb
        if n_batch:
            p.n_batch = int(n_batch)
        if n_ubatch:
            p.n_ubatch = int(n_ubatch)
        p.flash_attn_type = {
            "auto": xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_AUTO,
            "on": xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "off": xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }[flash_attn]
        kv = getattr(xlc.ggml_type, f"GGML_TYPE_{kv_type.upper()}")
        p.cache_type_k = kv
        p.cache_type_v = kv
        p.fit_params = False  # keep n_ctx as asked (fitting is for GPU memory)
        p.cache_ram_mib = 0  # no host-RAM prompt cache beyond the slot's own KV cache (default 8 GiB)
        p.ctx_shift = False  # never drop context silently; an overlong prompt is an error
        p.warmup = warmup
        p.sampling.temp = 0.0
        p.sampling.top_k = 1
        p.sampling.seed = 0
        p.endpoint_metrics = True
        p.verbosity = -1
        try:
            engine = xlc.Server(p)
        except Exception as exc:  # RuntimeError("Failed to init server, ...")
            raise ModelError(f"llama.cpp cannot load {gguf}: {exc}", code="model_load_failed") from exc
        params = {"n_ctx": ctx, "threads": n, "threads_batch": nb, "n_batch": p.n_batch, "n_ubatch": p.n_ubatch,
                  "flash_attn": flash_attn, "kv_type": kv_type}
        return cls(engine, tokens, model_id=model_id, context_length=ctx, trained_context_length=trained,
                   threads=n, mode=_file_type_name(meta.get("file_type")), params=params)

    def close(self) -> None:
        """Stop the llama.cpp server loop and free the model (also happens when the object is collected)."""
        with self._lock:
            self.engine = None

    @property
    def context_length(self) -> int:
        """Tokens (prompt + answer) this instance can hold: llama.cpp's n_ctx."""
        return self._context_length

    # ---------------------------------------------------------------- generation

    def _complete(self, messages: list[dict], max_new_tokens: int, stream: TextStream) -> Completion:
        """Calls are serialised (one at a time), as in `Generator`."""
        with self._lock:
            if self.engine is None:
                raise ModelError(f"generator {self.model_id} is closed", code="model_closed")
            start = time.monotonic()
            prompt = self.render(messages)
            n_prompt = self.count_tokens(prompt)
            check_fit(n_prompt, max_new_tokens, self.context_length)
            call = _Call(stream)
            if not call.text.ends_before_start(max_new_tokens):
                self.engine.handle_completions(_request(prompt, max_new_tokens), call.on_chunk)
                if call.error is not None:
                    raise call.error
                call.text.flush()
            return call.completion(self, n_prompt, start)


def _request(prompt: str, max_new_tokens: int) -> dict:
    """Greedy, streamed, the prompt's KV prefix reused; per-token timings and prompt progress reported."""
    return {
        "prompt": prompt,
        "max_tokens": int(max_new_tokens),
        "temperature": 0.0,
        "top_k": 1,
        "top_p": 1.0,
        "min_p": 0.0,
        "seed": 0,
        "cache_prompt": True,
        "stream": True,
        "stream_options": {"include_usage": True},
        "timings_per_token": True,
        "return_progress": True,
    }


class _Call:
    """What llama.cpp streamed for one call; `on_chunk` is the xllamacpp callback (True ends the stream)."""

    def __init__(self, text: TextStream):
        self.text = text
        self.usage: dict | None = None
        self.timings: dict | None = None
        self.error: BaseException | None = None
        self.finished = False  # llama.cpp sent a finish_reason; only usage may follow

    def on_chunk(self, chunk: dict) -> bool:
        try:
            return self._on_chunk(chunk)
        except BaseException as exc:  # an exception here would be swallowed by xllamacpp: keep it, end the stream
            self.error = exc
            return True

    def _on_chunk(self, chunk: dict) -> bool:
        if "error" in chunk or ("code" in chunk and "choices" not in chunk):
            err = chunk.get("error", chunk)
            message = err.get("message", err) if isinstance(err, dict) else err
            self.error = ModelError(f"llama.cpp: {message}", code="generation_failed")
            return True
        if self.finished:
            if chunk.get("usage"):
                self.usage = chunk["usage"]
            if chunk.get("timings"):
                self.timings = chunk["timings"]
            return False
        if chunk.get("timings"):
            self.timings = chunk["timings"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            piece = choice.get("text") or ""
            if piece and self.text.append(piece):
                return True
            reason = choice.get("finish_reason")
            if reason:
                self.text.end(reason)
                self.finished = True
                return False  # let the server finish sending (usage arrives with or after this chunk)
        return self.text.past_deadline()

    def completion(self, gen: LlamaCppGenerator, n_prompt: int, start: float) -> Completion:
        """The server's counts: `usage`, else the last per-token timings (a stream we ended), else ours."""
        usage, timings = self.usage or {}, self.timings or {}
        if usage:
            prompt_tokens = int(usage["prompt_tokens"])
            completion_tokens = int(usage["completion_tokens"])
        elif timings:
            prompt_tokens = int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0))
            completion_tokens = int(timings.get("predicted_n", 0))
        else:  # nothing generated (no call, or stopped during the prefill)
            prompt_tokens, completion_tokens = n_prompt, 0
        if prompt_tokens != n_prompt and (usage or timings.get("predicted_n")):
            log.warning("%s: llama.cpp counted %d prompt tokens, the tokenizer %d", gen.model_id, prompt_tokens, n_prompt)
        return Completion(
            text=self.text.output,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_prompt_tokens=int(timings.get("cache_n", 0) or 0),
            wall_ms=(time.monotonic() - start) * 1000.0,
            prefill_ms=float(timings.get("prompt_ms", 0.0) or 0.0),
            model_id=gen.model_id,
            stopped_by=self.text.stopped_by,
            runtime=gen.runtime,
        )
