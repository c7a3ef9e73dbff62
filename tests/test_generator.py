"""The generator: GGUF -> dense HF folder, greedy decoding, exact token accounting, streaming, limits.

Fast tests use SmolLM2-135M (English only). The `slow` tests build the default Qwen2.5 0.5B model
(about a minute to dequantize) and check it answers a Chinese and an English question from a passage.
"""

from __future__ import annotations

import json
import time

import pytest

from rag.models.completion import Completion
from rag.models.generator import Generator
from tests.generator_contract import assert_calls_serialised

SECRET = [{"role": "user", "content": "The secret code is 4721.\n\nWhat is the secret code?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


@pytest.fixture(scope="module")
def gen(small_generator_dir) -> Generator:
    # small_generator_dir (conftest) is built by rag.models.cache -> gguf_build.build_gguf_folder
    return Generator.load(small_generator_dir, model_id="smollm2-135m-instruct")


# ---------------------------------------------------------------- the prepared folder


def test_folder_is_a_plain_dense_checkpoint(small_generator_dir):
    config = json.loads((small_generator_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "float32"
    assert (small_generator_dir / "model.safetensors").is_file()
    assert (small_generator_dir / "generation_config.json").is_file()
    gen_config = json.loads((small_generator_dir / "generation_config.json").read_text())
    assert gen_config.get("do_sample") is False


def test_chat_template_survives(gen):
    rendered = gen.render([{"role": "user", "content": "hello"}])
    assert "<|im_start|>user\nhello<|im_end|>" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")


def test_context_length(gen):
    assert gen.context_length == 8192


def test_count_tokens_is_exact(gen):
    assert gen.count_tokens("") == 0
    text = "The quick brown fox jumps over the lazy dog."
    assert gen.count_tokens(text) == len(gen.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert gen.prompt_tokens(SECRET) == gen.count_tokens(gen.render(SECRET))


# ---------------------------------------------------------------- generation


def test_answers_from_the_passage(gen):
    c = gen.generate(SECRET, max_new_tokens=32)
    assert isinstance(c, Completion)
    assert "4721" in c.text
    assert c.model_id == "smollm2-135m-instruct"
    assert c.cached_prompt_tokens == 0
    assert c.prefill_ms > 0 and c.wall_ms >= c.prefill_ms


def test_greedy_is_deterministic(gen):
    a = gen.generate(STORY, max_new_tokens=24)
    b = gen.generate(STORY, max_new_tokens=24)
    assert a.text == b.text
    assert a.completion_tokens == b.completion_tokens


def test_token_accounting(gen):
    c = gen.generate(SECRET, max_new_tokens=48)
    assert c.prompt_tokens == gen.prompt_tokens(SECRET)
    # completion_tokens counts a final end-of-turn token; the text does not contain it
    extra = 1 if c.stopped_by == "eos" else 0
    assert abs(c.completion_tokens - extra - gen.count_tokens(c.text)) <= 1
    if c.stopped_by == "eos":
        assert c.completion_tokens <= 48


def test_streamed_pieces_concatenate_to_text(gen):
    pieces: list[str] = []
    c = gen.generate(STORY, max_new_tokens=40, on_token=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces) == c.text
    assert all(p for p in pieces)


def test_max_new_tokens_respected(gen):
    c = gen.generate(STORY, max_new_tokens=5)
    assert c.completion_tokens == 5
    assert c.stopped_by == "max_tokens"
    assert gen.generate(STORY, max_new_tokens=0).completion_tokens == 0


def test_deadline_stops_generation(gen):
    t0 = time.monotonic()
    c = gen.generate(STORY, max_new_tokens=400, deadline=t0 + 0.5)
    elapsed = time.monotonic() - t0
    assert c.stopped_by == "deadline"
    assert 0 < c.completion_tokens < 400
    assert elapsed < 5  # one decode step (~0.05 s) past the deadline, plus the prefill


def test_deadline_already_passed(gen):
    c = gen.generate(STORY, max_new_tokens=50, deadline=time.monotonic() - 1)
    assert c.stopped_by == "deadline"
    assert c.completion_tokens == 0 and c.text == ""
    assert c.prompt_tokens == gen.prompt_tokens(STORY)


def test_stop_string_ends_generation_and_is_not_streamed(gen):
    ref = gen.generate(STORY, max_new_tokens=40).text
    words = ref.split()
    assert len(words) > 6
    stop = " " + words[5]  # a word in the middle of the reference answer
    expected = ref[: ref.find(stop)]
    pieces: list[str] = []
    c = gen.generate(STORY, max_new_tokens=40, stop=[stop], on_token=pieces.append)
    assert c.stopped_by == "stop"
    assert c.text == expected
    assert "".join(pieces) == expected


def test_generate_calls_are_serialised(gen):
    assert_calls_serialised(gen, SECRET, callers=2)


def test_int8_dynamic_mode_loads_and_generates(small_generator_dir):
    g = Generator.load(small_generator_dir, mode="int8-dynamic", model_id="smollm2-135m-instruct")
    a = g.generate(SECRET, max_new_tokens=8)
    b = g.generate(SECRET, max_new_tokens=8)
    assert a.text == b.text and a.completion_tokens > 0


def test_bf16_mode_loads_and_generates(small_generator_dir):
    import torch

    g = Generator.load(small_generator_dir, mode="bf16", model_id="smollm2-135m-instruct")
    assert g.model.dtype == torch.bfloat16
    assert "4721" in g.generate(SECRET, max_new_tokens=24).text


def test_auto_mode_picks_bf16_only_with_native_bf16():
    from rag.models.generator import native_bf16, resolve_mode

    epyc = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
    old = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"
    sapphire = "flags\t\t: avx2 amx_bf16 amx_tile\n"
    assert native_bf16(epyc) and native_bf16(sapphire) and not native_bf16(old) and not native_bf16("")
    assert resolve_mode("auto", epyc) == "bf16" and resolve_mode("auto", old) == "fp32"
    assert resolve_mode("fp32", epyc) == "fp32" and resolve_mode("int8-dynamic", old) == "int8-dynamic"


def test_build_refuses_a_non_empty_folder(tmp_path):
    from rag.models.gguf_build import build_gguf_folder

    from rag.errors import ModelError

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ValueError):
        build_gguf_folder(gguf, tmp_path)  # holds model.gguf: not empty
    with pytest.raises(ModelError):
        build_gguf_folder(tmp_path / "missing.gguf", tmp_path / "out")


def test_unknown_mode_is_refused(small_generator_dir):
    with pytest.raises(ValueError):
        Generator.load(small_generator_dir, mode="fp8", model_id="x")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the Qwen 0.5B model (slow; the default 1.5B: tests/test_llamacpp.py)


@pytest.fixture(scope="module")
def qwen(models_dir) -> Generator:
    # rag.models.cache concatenates the six packaged chunks, checks the sha256, then runs build_gguf_folder
    from rag.models import cache
    from rag.models.registry import REGISTRY

    spec = REGISTRY["qwen2.5-coder-0.5b-instruct"]
    folder = cache.prepare(spec, models_dir, progress=False).path
    return Generator.load(folder, model_id=spec.name)


def _ask(passage: str, question: str) -> list[dict]:
    return [{"role": "user", "content": f"{passage}\n\n根据上面的内容回答：{question}"}]


@pytest.mark.slow
def test_qwen05_answers_chinese(qwen):
    c = qwen.generate(_ask("明长城东起鸭绿江，西至嘉峪关，全长约8851.8公里。", "明长城全长多少公里？"), max_new_tokens=48)
    assert "8851" in c.text, c.text
    assert c.stopped_by == "eos"
    assert "\ufffd" not in c.text


@pytest.mark.slow
def test_qwen05_answers_english(qwen):
    c = qwen.generate(
        _ask("The secret code of the vault is 4721. The vault is in Zurich.", "What is the secret code of the vault?"),
        max_new_tokens=48,
    )
    assert "4721" in c.text, c.text
    assert qwen.context_length == 32768
