"""The llama.cpp generator runtime: the prepared GGUF folder, exact accounting against the server's own
usage, streaming, stop strings, limits, serialisation; and the Qwen models in both runtimes (slow).

Fast tests use SmolLM2-135M (English only) in the llamacpp runtime. The `slow` tests load
Qwen2.5-Coder-1.5B with each runtime and the default Qwen2.5-Coder-0.5B with llama.cpp.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from rag.errors import ModelChecksumError, ModelError
from rag.models import cache
from rag.models.completion import Completion
from rag.models.llamacpp import LlamaCppGenerator
from rag.models.registry import REGISTRY
from tests.generator_contract import (EN, ZH, assert_calls_serialised, assert_context_overflow_refused,
                                      assert_max_new_tokens_respected, assert_on_token_errors_end_the_call,
                                      assert_stop_string_cuts, assert_streams_exactly)

SECRET = [{"role": "user", "content": "The secret code is 4721.\n\nWhat is the secret code?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
SMOL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smol_dir(models_dir):
    return cache.prepare(REGISTRY[SMOL], models_dir, progress=False, runtime="llamacpp").path


@pytest.fixture(scope="module")
def gen(smol_dir):
    g = LlamaCppGenerator.load(smol_dir, model_id=SMOL, threads=2)
    yield g
    g.close()


def _server_usage(gen, messages, max_tokens):
    """The same request, non-streamed, straight to llama.cpp: its own usage and text."""
    r = gen.engine.handle_completions({"prompt": gen.render(messages), "max_tokens": max_tokens,
                                       "temperature": 0.0, "top_k": 1, "seed": 0})
    return r["usage"], r["choices"][0]["text"]


# ---------------------------------------------------------------- the prepared folder


def test_prepared_folder_holds_the_checked_gguf_and_tokenizer(smol_dir, models_dir):
    spec = REGISTRY[SMOL]
    assert smol_dir == models_dir / f"{SMOL}.gguf"
    manifest = json.loads((smol_dir / "manifest.json").read_text())
    assert manifest["runtime"] == "llamacpp"
    assert manifest["files"]["model.gguf"] == {"sha256": spec.sha256, "size": spec.size}
    assert manifest["gguf"]["architecture"] == "llama" and manifest["gguf"]["context_length"] == 8192
    assert (smol_dir / "tokenizer.json").is_file() and (smol_dir / "tokenizer_config.json").is_file()
    assert not any(smol_dir.glob("*.safetensors"))  # no dequantized copy
    assert cache.is_prepared(spec, models_dir, "llamacpp")
    assert cache.verify(spec, models_dir, runtime="llamacpp", sources=False)
    # preparing again is a no-op
    assert cache.prepare(spec, models_dir, progress=False, runtime="llamacpp").built is False


def test_corrupt_or_missing_files_are_refused(smol_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(smol_dir, copy)
    tok = copy / "tokenizer.json"
    data = bytearray(tok.read_bytes())
    data[100] ^= 1
    tok.write_bytes(bytes(data))
    with pytest.raises(ModelChecksumError, match="tokenizer.json"):
        cache.verify_folder(copy)
    shutil.copy(smol_dir / "tokenizer.json", tok)
    with open(copy / "model.gguf", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(ModelChecksumError, match="model.gguf"):
        cache.verify_folder(copy)
    (copy / "model.gguf").unlink()
    with pytest.raises(ModelError, match="no model.gguf"):
        LlamaCppGenerator.load(copy, model_id="x")


def test_load_generator_picks_the_runtime(small_settings):
    from rag.models.loader import load_generator

    settings = small_settings.model_copy(update={"generator_runtime": "llamacpp", "threads": 2})
    g, status = load_generator(settings)
    try:
        assert isinstance(g, LlamaCppGenerator) and g.runtime == "llamacpp"
        assert status.details["runtime"] == "llamacpp" and status.details["mode"] == "gguf-q4_1"
        assert status.path.endswith(f"{SMOL}.gguf")
        assert g.context_length == 4096  # min(trained 8192, max(4096, context_window 1024))
        c = g.generate(SECRET, max_new_tokens=16)
        assert c.runtime == "llamacpp" and c.model_id == SMOL
    finally:
        g.close()


def test_the_generator_loads_beside_the_embedder_when_it_needs_no_torch_and_nothing_is_built(
        small_settings, smol_dir, small_embedder_dir, tmp_path):
    from rag.models.loader import loads_in_parallel
    from rag.service.runtime import Runtime

    settings = small_settings.model_copy(update={"generator_runtime": "llamacpp", "threads": 2})
    assert loads_in_parallel(settings)
    assert not loads_in_parallel(settings.model_copy(update={"generator_runtime": "transformers"}))
    assert not loads_in_parallel(settings.model_copy(update={"model_cache_dir": tmp_path / "empty"}))  # a build
    rt = Runtime(settings)
    try:
        rt.start(worker=False)
        assert rt.startup["models_at_once"] and rt.generator.runtime == "llamacpp" and rt.embedder.dim > 0
        assert rt.startup["total_s"] >= rt.startup["models_s"] >= max(rt.startup["embedder_s"], rt.startup["generator_s"])
        assert rt.startup_line().startswith("ready in ") and "at once" in rt.startup_line()
        # the embedded store opens while the models load: its time is inside the total, not added to it
        assert "beside them" in rt.startup_line() and rt.startup["store_and_indexes_s"] <= rt.startup["total_s"]
        assert rt.embedder.count_tokens("长城 wall") > 0  # the counting tokenizer, made at first use
    finally:
        rt.close()


def test_not_prepared_is_a_clear_error(small_settings, tmp_path):
    from rag.models.loader import load_generator

    settings = small_settings.model_copy(update={"generator_runtime": "llamacpp", "model_cache_dir": tmp_path / "empty"})
    with pytest.raises(ModelError, match="--runtime llamacpp") as err:
        load_generator(settings, prepare=False)
    assert err.value.code == "model_not_prepared"


def test_completion_runtime_field_defaults_to_transformers():
    from rag.models.generator import Generator

    c = Completion("x", 1, 1, 0, 1.0, 0.5, "m", "eos")
    assert c.runtime == "transformers" and Generator.runtime == "transformers"


# ---------------------------------------------------------------- tokens


def test_render_has_the_chat_template(gen):
    rendered = gen.render([{"role": "user", "content": "hello"}])
    assert "<|im_start|>user\nhello<|im_end|>" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    assert gen.mode == "gguf-q4_1" and gen.runtime == "llamacpp"
    assert gen.context_length == 4096 and gen.trained_context_length == 8192


def test_token_counts_equal_the_servers_usage(gen):
    for messages, n in ((SECRET, 32), (STORY, 24)):
        c = gen.generate(messages, max_new_tokens=n)
        usage, text = _server_usage(gen, messages, n)
        assert c.prompt_tokens == usage["prompt_tokens"] == gen.prompt_tokens(messages)
        assert c.completion_tokens == usage["completion_tokens"]
        assert c.text == text
        # an end-of-turn token is counted (as in Generator) but not part of the text
        extra = 1 if c.stopped_by == "eos" else 0
        assert c.completion_tokens - extra == gen.count_tokens(c.text)
    assert gen.count_tokens("") == 0


def test_cached_prefix_is_reported(gen):
    gen.generate(STORY, max_new_tokens=2)
    c = gen.generate(STORY, max_new_tokens=2)  # same prompt again: llama.cpp reuses the slot's KV cache
    assert c.cached_prompt_tokens >= c.prompt_tokens - 2
    assert c.prompt_tokens == gen.prompt_tokens(STORY)


# ---------------------------------------------------------------- generation


def test_answers_from_the_passage(gen):
    c = gen.generate(SECRET, max_new_tokens=32)
    assert isinstance(c, Completion)
    assert "4721" in c.text
    assert c.stopped_by == "eos"
    assert c.prefill_ms > 0 and c.wall_ms >= c.prefill_ms


def test_greedy_is_deterministic(gen):
    a = gen.generate(STORY, max_new_tokens=24)
    b = gen.generate(STORY, max_new_tokens=24)
    assert a.text == b.text and a.completion_tokens == b.completion_tokens == 24


def test_streamed_pieces_concatenate_to_text(gen):
    assert_streams_exactly(gen, STORY)


def test_max_new_tokens_respected(gen):
    assert_max_new_tokens_respected(gen, STORY)


def test_stop_string_ends_generation_and_is_not_streamed(gen):
    c, stop = assert_stop_string_cuts(gen, STORY)
    # the token that completed the stop string is counted, as llama.cpp's own stop handling counts it
    usage, text = _server_usage_with_stop(gen, STORY, 40, stop)
    assert text == c.text and c.completion_tokens == usage["completion_tokens"]


def _server_usage_with_stop(gen, messages, max_tokens, stop):
    r = gen.engine.handle_completions({"prompt": gen.render(messages), "max_tokens": max_tokens, "stop": [stop],
                                       "temperature": 0.0, "top_k": 1, "seed": 0})
    return r["usage"], r["choices"][0]["text"]


def test_held_back_stop_prefix_is_flushed_at_the_end(gen):
    # llama.cpp's own streaming loses text held back as a possible stop prefix when generation ends by
    # length; matching stop strings here must not.
    ref = gen.generate(STORY, max_new_tokens=10).text
    stop = ref.split()[-1] + "zzz"
    pieces: list[str] = []
    c = gen.generate(STORY, max_new_tokens=10, stop=[stop], on_token=pieces.append)
    assert c.stopped_by == "max_tokens" and c.text == ref and "".join(pieces) == ref


def test_deadline_stops_generation(gen):
    gen.generate(STORY, max_new_tokens=1)  # the prompt is then cached: the deadline falls in the decode
    t0 = time.monotonic()
    c = gen.generate(STORY, max_new_tokens=400, deadline=t0 + 1.0)  # 400 tokens take ~5 s on 2 idle cores
    elapsed = time.monotonic() - t0
    assert c.stopped_by == "deadline"
    assert 0 < c.completion_tokens < 400
    assert c.completion_tokens == gen.count_tokens(c.text)
    assert elapsed < 3
    # the cancelled request does not hold the slot: the next call runs at once
    t0 = time.monotonic()
    assert gen.generate(SECRET, max_new_tokens=4).completion_tokens == 4
    assert time.monotonic() - t0 < 2


def test_deadline_during_a_long_prefill(gen):
    # ~1,900 uncached prompt tokens: llama.cpp reports progress after each 512-token batch, and the deadline
    # ends the call there, before any token is generated
    long = [{"role": "user", "content": "".join(f"Note {i}: shelf {i * 7 % 13} holds atlases.\n" for i in range(150))}]
    assert gen.prompt_tokens(long) > 3 * 512
    c = gen.generate(long, max_new_tokens=20, deadline=time.monotonic() + 0.05)
    assert c.stopped_by == "deadline"
    assert c.completion_tokens == 0 and c.text == ""


def test_deadline_already_passed(gen):
    c = gen.generate(STORY, max_new_tokens=50, deadline=time.monotonic() - 1)
    assert c.stopped_by == "deadline"
    assert c.completion_tokens == 0 and c.text == ""
    assert c.prompt_tokens == gen.prompt_tokens(STORY)


def test_on_token_errors_propagate_and_end_the_call(gen):
    assert_on_token_errors_end_the_call(gen, STORY, SECRET)


def test_context_overflow_is_refused(gen):
    assert_context_overflow_refused(gen, SECRET)


def test_generate_calls_are_serialised(gen):
    assert_calls_serialised(gen, SECRET, callers=3)


# ---------------------------------------------------------------- the Qwen models (slow)


def _check_answers(g) -> None:
    zh = g.generate(ZH, max_new_tokens=48)
    assert "8851" in zh.text, zh.text
    assert zh.stopped_by == "eos" and "\ufffd" not in zh.text
    en = g.generate(EN, max_new_tokens=48)
    assert "4721" in en.text, en.text
    for messages, c in ((ZH, zh), (EN, en)):
        assert c.prompt_tokens == g.prompt_tokens(messages)


@pytest.fixture(scope="module")
def qwen15_gguf_dir(models_dir):
    return cache.prepare(REGISTRY["qwen2.5-coder-1.5b-instruct"], models_dir, progress=False, runtime="llamacpp").path


@pytest.mark.slow
def test_qwen15_llamacpp_answers_chinese_and_english(qwen15_gguf_dir):
    manifest = json.loads((qwen15_gguf_dir / "manifest.json").read_text())
    assert manifest["files"]["model.gguf"]["size"] == 1_117_320_768
    assert manifest["gguf"]["architecture"] == "qwen2" and manifest["gguf"]["block_count"] == 28
    g = LlamaCppGenerator.load(qwen15_gguf_dir, model_id="qwen2.5-coder-1.5b-instruct", threads=2)
    try:
        assert g.mode == "gguf-q4_k_m" and g.trained_context_length == 32768 and g.context_length == 4096
        _check_answers(g)
        # llama.cpp's own count of a mixed Chinese/English prompt equals the tokenizer's
        mixed = [{"role": "user", "content": "长城（Great Wall）全长约 8,851.8 km；它始建于春秋战国时期。Why?"}]
        usage, _ = _server_usage(g, mixed, 1)
        assert usage["prompt_tokens"] == g.prompt_tokens(mixed)
    finally:
        g.close()


@pytest.mark.slow
def test_qwen15_transformers_bf16_answers_chinese_and_english(qwen15_gguf_dir, tmp_path):
    import torch

    from rag.models.generator import Generator
    from rag.models.gguf_build import build_gguf_folder

    folder = tmp_path / "qwen15-bf16"
    folder.mkdir()
    build_gguf_folder(qwen15_gguf_dir / "model.gguf", folder, dtype="bfloat16")
    g = Generator.load(folder, mode="bf16", threads=2, model_id="qwen2.5-coder-1.5b-instruct")
    assert g.model.dtype == torch.bfloat16 and g.runtime == "transformers"
    _check_answers(g)


@pytest.mark.slow
def test_default_model_with_llamacpp(models_dir):
    from rag.settings import Settings
    from rag.models.loader import load_generator

    settings = Settings(model_cache_dir=models_dir, generator="qwen2.5-coder-0.5b-instruct",
                        generator_runtime="llamacpp", threads=2)
    g, status = load_generator(settings)
    try:
        assert status.details["runtime"] == "llamacpp" and status.details["mode"] == "gguf-q4_k_m"
        _check_answers(g)
    finally:
        g.close()
