"""The answering model run by OpenVINO GenAI: the packaged GGUF converted once to int8 weights
(`rag.models.openvino_build`), computed in this process by OpenVINO's CPU kernels.

Why it exists: on 2 CPU cores it prefills and decodes faster than torch's bf16 with a third of the
memory (the README's runtime table has the figures and the CPU each is from). `RAG_GENERATOR_RUNTIME=auto`
picks it where it was measured fastest (`rag.models.runtimes.auto_runtime`).

The same guarantees as the other runtimes (`rag.models.completion`):
* prompts are rendered and tokenized by our `ChatTokenizer` (read from the same GGUF) and passed to
  OpenVINO as token ids, so `prompt_tokens` is exactly what the packing loop predicted;
* greedy decoding; end-of-turn ids from the tokenizer; stop strings, held-back text and the deadline
  are handled by `TextStream` as the generated ids arrive (decoded by the same tokenizer as the
  transformers runtime, so both runtimes stream the same text for the same ids);
* a final end-of-turn token counts as a completion token, as in the other runtimes.

Prefix caching: the pipeline keeps the KV blocks of earlier prompts (`enable_prefix_caching`), so a call
that starts like an earlier one (the fixed system prompt, a rewrite and then the answer over the same
passages) only prefills what is new. OpenVINO does not report how many tokens it reused;
`cached_prompt_tokens` is the longest prefix shared with a prompt this instance ran before, rounded down
to whole KV blocks (what the prefix cache can serve), and TTFT (`prefill_ms`) shows the effect.

Interrupting: the deadline is checked after each generated token; the prefill itself is one call that
cannot be interrupted (about 3 s for 1,000 tokens on 2 cores).

Thread-safety: one generation at a time (a lock, like the other in-process runtimes).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

from rag import offline as _offline  # noqa: F401  (must run before transformers is imported)
from rag.errors import ModelError
from rag.models.chat_tokens import ChatTokenizer
from rag.models.completion import BaseGenerator, Completion, TextStream, check_fit

log = logging.getLogger(__name__)

DEFAULT_MAX_CTX = 4096
KV_BLOCK = 32  # tokens per KV cache block of OpenVINO's CPU paged attention: the prefix cache's unit
KV_CACHE_GB = 1  # the paged KV cache (prefix cache included): ~70,000 tokens of the 1.5B
REMEMBERED_PROMPTS = 16  # earlier prompts compared for the cached-token count


class OpenVinoGenerator(BaseGenerator):
    """An int8 OpenVINO model (prepared openvino folder) plus the HF tokenizer of the same GGUF."""

    runtime = "openvino"

    def __init__(self, pipeline, tokens: ChatTokenizer, *, model_id: str, context_length: int,
                 trained_context_length: int, threads: int, mode: str, eos_ids: frozenset[int]):
        self.pipeline = pipeline
        self.tokens = tokens
        self.tokenizer = tokens.tokenizer
        self.model_id = model_id
        self.mode = mode
        self.threads = threads
        self.trained_context_length = trained_context_length
        self._context_length = context_length
        self._eos_ids = eos_ids
        self._seen: deque[list[int]] = deque(maxlen=REMEMBERED_PROMPTS)
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_settings(cls, settings, where: Path | str) -> tuple["OpenVinoGenerator", dict]:
        if not Path(where).is_dir():
            raise ModelError(f"generator {settings.generator!r}: the openvino runtime needs a registry name or a "
                             "prepared openvino folder", code="model_not_found")
        gen = cls.load(Path(where), model_id=settings.generator, threads=settings.threads,
                       n_ctx=max(DEFAULT_MAX_CTX, settings.context_window))
        return gen, {"runtime": cls.runtime, "mode": gen.mode, "mode_setting": None,
                     "context_length": gen.context_length, "trained_context_length": gen.trained_context_length,
                     "openvino": {"threads": gen.threads, "kv_cache_gb": KV_CACHE_GB, "prefix_caching": True}}

    @classmethod
    def load(cls, folder: Path, *, model_id: str, threads: int = 0, n_ctx: int | None = None) -> "OpenVinoGenerator":
        """Load a prepared openvino folder; `threads` 0 means one per CPU core."""
        import openvino_genai

        folder = Path(folder)
        manifest = folder / "manifest.json"
        if not (folder / "openvino_model.xml").is_file() or not manifest.is_file():
            raise ModelError(f"{folder} is not a prepared openvino model folder; run "
                             "`rag models prepare NAME --runtime openvino`", code="model_not_prepared")
        meta = json.loads(manifest.read_text())
        trained = int(meta["gguf"]["context_length"])
        n = threads if threads and threads > 0 else (os.cpu_count() or 1)
        scheduler = openvino_genai.SchedulerConfig()
        scheduler.enable_prefix_caching = True
        scheduler.cache_size = KV_CACHE_GB
        try:
            pipeline = openvino_genai.LLMPipeline(str(folder), "CPU", INFERENCE_NUM_THREADS=n,
                                                  scheduler_config=scheduler)
        except Exception as exc:
            raise ModelError(f"OpenVINO cannot load {folder}: {exc}", code="model_load_failed") from exc
        tokens = ChatTokenizer.load(folder)
        eos = {tokens.tokenizer.eos_token_id, tokens.tokenizer.convert_tokens_to_ids("<|im_end|>"),
               tokens.tokenizer.convert_tokens_to_ids("<|endoftext|>")}
        eos_ids = frozenset(int(i) for i in eos if isinstance(i, int) and i != tokens.tokenizer.unk_token_id)
        ctx = min(trained, n_ctx or DEFAULT_MAX_CTX)
        return cls(pipeline, tokens, model_id=model_id, context_length=ctx, trained_context_length=trained,
                   threads=n, mode="openvino-" + meta.get("openvino", {}).get("weights", "int8_asym"), eos_ids=eos_ids)

    def close(self) -> None:
        with self._lock:
            self.pipeline = None

    @property
    def context_length(self) -> int:
        return self._context_length

    # ---------------------------------------------------------------- generation

    def _complete(self, messages: list[dict], max_new_tokens: int, stream: TextStream) -> Completion:
        with self._lock:
            if self.pipeline is None:
                raise ModelError(f"generator {self.model_id} is closed", code="model_closed")
            start = time.monotonic()
            ids = self.tokens.encode(self.render(messages))
            check_fit(len(ids), max_new_tokens, self.context_length)
            cached = self._cached_prefix(ids)
            call = _Call(self, stream)
            prefill_ms = 0.0
            if not stream.ends_before_start(max_new_tokens):
                prefill_ms = call.run(ids, max_new_tokens)
                self._seen.append(ids)
            return Completion(
                text=stream.output,
                prompt_tokens=len(ids),
                completion_tokens=len(call.generated),
                cached_prompt_tokens=cached if call.generated else 0,
                wall_ms=(time.monotonic() - start) * 1000.0,
                prefill_ms=prefill_ms,
                model_id=self.model_id,
                stopped_by=stream.stopped_by,
                runtime=self.runtime,
            )

    def _cached_prefix(self, ids: list[int]) -> int:
        """Whole KV blocks of `ids` shared with an earlier prompt (never the last token: it is always run)."""
        best = 0
        for seen in self._seen:
            n = 0
            for a, b in zip(seen, ids):
                if a != b:
                    break
                n += 1
            best = max(best, n)
        return min(best, len(ids) - 1) // KV_BLOCK * KV_BLOCK


class _Call:
    """One generation: OpenVINO hands each generated id to `write`; returning STOP ends it."""

    def __init__(self, gen: OpenVinoGenerator, stream: TextStream):
        self.gen = gen
        self.stream = stream
        self.generated: list[int] = []
        self.error: BaseException | None = None

    def run(self, ids: list[int], max_new_tokens: int) -> float:
        """Generates greedily after `ids`; returns the time to the first token in ms."""
        import numpy as np
        import openvino as ov
        import openvino_genai

        config = openvino_genai.GenerationConfig()
        config.max_new_tokens = int(max_new_tokens)
        config.do_sample = False
        config.stop_token_ids = set(self.gen._eos_ids)
        inputs = openvino_genai.TokenizedInputs(ov.Tensor(np.array([ids], dtype=np.int64)),
                                                ov.Tensor(np.ones((1, len(ids)), dtype=np.int64)))
        streamer = _streamer_class()(self)
        result = self.gen.pipeline.generate(inputs, config, streamer)
        if self.error is not None:
            raise self.error
        if self.stream.stopped_by == "max_tokens" and self.generated and self.generated[-1] in self.gen._eos_ids:
            self.stream.stopped_by = "eos"
        self.stream.flush()
        return float(result.perf_metrics.get_ttft().mean)

    def write(self, token_ids: list[int]) -> bool:
        """True ends generation: an end-of-turn id, a completed stop string or the deadline."""
        for token in token_ids:
            self.generated.append(int(token))
            if token in self.gen._eos_ids:
                return True
            text = self.gen.tokenizer.decode([t for t in self.generated if t not in self.gen._eos_ids],
                                             skip_special_tokens=True, clean_up_tokenization_spaces=False)
            if self.stream.set_text(text) or self.stream.past_deadline():
                return True
        return False


_STREAMER = None


def _streamer_class():
    """`openvino_genai.StreamerBase` subclass, defined on first use so importing this module needs no OpenVINO."""
    global _STREAMER
    if _STREAMER is None:
        import openvino_genai

        class _Streamer(openvino_genai.StreamerBase):
            def __init__(self, call: _Call):
                super().__init__()
                self.call = call

            def write(self, token):
                call = self.call
                try:
                    stop = call.write(token if isinstance(token, list) else [token])
                except BaseException as exc:  # raised inside OpenVINO's loop it would be lost: keep it, stop
                    call.error = exc
                    stop = True
                return openvino_genai.StreamingStatus.STOP if stop else openvino_genai.StreamingStatus.RUNNING

            def end(self):
                pass

        _STREAMER = _Streamer
    return _STREAMER
