"""The answering model: a local Hugging Face causal LM, greedy decoding, token-exact accounting.

Decoding is a manual loop over the model's forward with a KV cache (no `model.generate`, no
streamer thread). That keeps everything the service needs in one place and exact:

* greedy argmax, so the same prompt gives the same answer on the same machine and mode;
* the prompt is run once ("prefill", only the last position's logits computed), then one token per step;
* text is streamed to `on_token` as soon as it is safe (`rag.models.completion.TextStream`: the whole
  token list is decoded each step, so a CJK character split across tokens is held back until complete);
* the deadline and stop strings are checked between steps, so a call ends at most one decode step
  (~0.1 s) after its deadline, or after the prefill if the deadline passes during it.

Thread-safety: one `Generator` runs one generation at a time. `generate` takes an internal lock, so
concurrent callers queue (they do not interleave); the tokenizer helpers (`count_tokens`, `render`,
`prompt_tokens`, `rag.models.chat_tokens`) do not take the lock and are safe to call at any time.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import Path
from typing import Literal

from rag import offline as _offline  # noqa: F401  (must run before transformers is imported)
from rag.errors import ModelError
from rag.models.chat_tokens import ChatTokenizer
from rag.models.completion import BaseGenerator, Completion, TextStream, check_fit

Mode = Literal["fp32", "int8-dynamic", "bf16"]
MODES: tuple[str, ...] = ("fp32", "int8-dynamic", "bf16")


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX). Without it torch emulates
    bf16 matrix products and `bf16` mode can be slower than fp32."""
    from rag.models.cpu import read_cpu

    return read_cpu(cpuinfo).native_bf16


def resolve_mode(mode: str, cpuinfo: str | None = None) -> str:
    """`auto` -> `bf16` where the CPU has native bf16 (measured ~1.9x prefill and 1.6x decode over
    fp32 on 2 EPYC cores, same answers on our checks), else `fp32`; other modes unchanged."""
    if mode == "auto":
        return "bf16" if native_bf16(cpuinfo) else "fp32"
    return mode


def quantize_int8_dynamic(model):
    """Replace every `nn.Linear` with a dynamically quantized int8 one (per-output-channel weight scales).

    Per-channel rather than torch's default per-tensor scales: same speed on x86 (fbgemm), closer to the
    fp32 answers (on our six comparison prompts it changed 4 answers where per-tensor changed 5).

    Uses `torch.ao.quantization.quantize_dynamic`: still shipped and working in torch 2.13, though marked
    deprecated in favour of torchao's `quantize_(model, Int8DynamicActivationInt8WeightConfig())`, which is
    not a dependency of this project (and on CPU is only fast under torch.compile). The deprecation
    warnings are silenced here; the call is the only place to change when torch drops the API.
    """
    import torch
    from torch import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # in place: no second copy of the model at load
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


class Generator(BaseGenerator):
    """A loaded causal LM and its tokenizer. Build with `Generator.load(folder, ...)`."""

    runtime = "transformers"

    def __init__(self, model, tokens: ChatTokenizer, *, model_id: str, mode: Mode = "fp32", threads: int = 0):
        self.model = model
        self.tokens = tokens
        self.tokenizer = tokens.tokenizer
        self.model_id = model_id
        self.mode = mode
        self.threads = threads
        self._lock = threading.Lock()
        self._eos_ids = self._find_eos_ids()

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_settings(cls, settings, where: Path | str) -> tuple["Generator", dict]:
        """The generator in `RAG_GENERATOR_MODE` (`auto` resolved here), and its status details."""
        mode = resolve_mode(settings.generator_mode)
        gen = cls.load(Path(where), mode=mode, threads=settings.threads, model_id=settings.generator)
        return gen, {"runtime": cls.runtime, "mode": mode, "mode_setting": settings.generator_mode,
                     "context_length": gen.context_length}

    @classmethod
    def load(cls, folder: Path, *, mode: Mode = "fp32", threads: int = 0, model_id: str) -> "Generator":
        """Load a prepared HF folder (see `rag.models.gguf_build`) for CPU inference.

        `threads` 0 means one torch intra-op thread per CPU core (`os.cpu_count()`); note that this sets
        the process-wide torch thread count.

        Modes: `fp32` runs the folder's weights as saved (the GGUF's dequantized values, exactly).
        `int8-dynamic` quantizes every Linear layer to int8 at load (fastest; answers differ slightly).
        `bf16` runs weights and activations in bfloat16: about twice fp32's prefill and decode speed on CPUs
        with AVX512-BF16/AMX, half the memory; in our comparison it gave the same greedy answers as fp32 on all
        six check prompts, but it is a different numeric path, not guaranteed identical. The service gives it
        the folder stored in bfloat16 (`rag.models.runtimes`), which loads without a cast; a float32 folder
        also works (cast at load, both copies in memory for a moment) and gives the same weights, each rounded
        once from the same float32 value.
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ModelError(f"{folder} is not a prepared model folder (no config.json)")
        n = threads if threads and threads > 0 else (os.cpu_count() or 1)
        torch.set_num_threads(n)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            dtype = torch.bfloat16 if mode == "bf16" else torch.float32
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
        except Exception as exc:
            raise ModelError(f"cannot load generator from {folder}: {exc}") from exc
        model.eval()
        if mode == "int8-dynamic":
            model = quantize_int8_dynamic(model)
        return cls(model, ChatTokenizer(tokenizer, folder), model_id=model_id, mode=mode, threads=n)

    def _find_eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        gen = getattr(self.model, "generation_config", None)
        for source in (getattr(gen, "eos_token_id", None), self.model.config.eos_token_id, self.tokenizer.eos_token_id):
            if source is None:
                continue
            ids.update(source if isinstance(source, (list, tuple)) else [source])
        return frozenset(int(i) for i in ids)

    @property
    def context_length(self) -> int:
        """Longest sequence (prompt + answer) the model was trained for."""
        return int(self.model.config.max_position_embeddings)

    # ---------------------------------------------------------------- generation

    def _complete(self, messages: list[dict], max_new_tokens: int, stream: TextStream) -> Completion:
        """Calls are serialised (one at a time)."""
        with self._lock:
            start = time.monotonic()
            ids = self.tokens.encode(self.render(messages))
            check_fit(len(ids), max_new_tokens, self.context_length)
            generated: list[int] = []
            prefill_ms = 0.0
            if not stream.ends_before_start(max_new_tokens):
                prefill_ms = self._decode(ids, max_new_tokens, generated, stream)
            return Completion(
                text=stream.output,
                prompt_tokens=len(ids),
                completion_tokens=len(generated),
                cached_prompt_tokens=0,  # no prefix reuse: every call runs its whole prompt
                wall_ms=(time.monotonic() - start) * 1000.0,
                prefill_ms=prefill_ms,
                model_id=self.model_id,
                stopped_by=stream.stopped_by,
                runtime=self.runtime,
            )

    def _decode(self, ids: list[int], max_new_tokens: int, generated: list[int], stream: TextStream) -> float:
        """Greedy decoding of the prompt `ids` into `generated` and `stream`; returns the prefill's ms."""
        import torch

        with torch.inference_mode():
            t0 = time.monotonic()
            out = self.model(
                input_ids=torch.tensor([ids], dtype=torch.long),
                use_cache=True,
                logits_to_keep=1,
            )
            prefill_ms = (time.monotonic() - t0) * 1000.0
            past = out.past_key_values
            next_id = int(out.logits[0, -1].argmax())
            while True:
                generated.append(next_id)
                if next_id in self._eos_ids:
                    stream.stopped_by = "eos"
                    break
                text = self.tokenizer.decode(
                    [t for t in generated if t not in self._eos_ids],
                    skip_special_tokens=True,
                    clean_up_tokenization_spaces=False,
                )
                if stream.set_text(text):
                    break
                if len(generated) >= max_new_tokens:
                    stream.stopped_by = "max_tokens"
                    break
                if stream.past_deadline():
                    break
                out = self.model(
                    input_ids=torch.tensor([[next_id]], dtype=torch.long),
                    past_key_values=past,
                    use_cache=True,
                )
                past = out.past_key_values
                next_id = int(out.logits[0, -1].argmax())
        del past
        stream.flush()
        return prefill_ms
