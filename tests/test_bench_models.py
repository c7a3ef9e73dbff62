"""`rag bench models`: the CPU's measured peak, each runtime's speed as a fraction of it, the CPU named."""

from __future__ import annotations

import pytest

from rag.models import cache
from rag.models.registry import REGISTRY
from rag_bench import models as bench
from rag_bench.peak import fractions, measure_peak

SMOL = "smollm2-135m-instruct"


def test_peak_probe_measures_every_kind():
    peak = measure_peak(1, m=128, k=128, n=256)
    assert peak["threads"] == 1
    for key in ("fp32_gflops", "bf16_gflops", "int8_gops", "bf16_gemv_gb_s"):
        assert peak[key] > 0, key


def test_fractions_of_the_peak():
    peak = {"bf16_gflops": 400.0, "int8_gops": 600.0, "bf16_gemv_gb_s": 18.0}
    row = {"linear_params": 1_300_000_000, "prefill_tok_s": 100.0, "weight_bytes": 3_000_000_000, "decode_tok_s": 3.0}
    f = fractions(row, peak)
    assert f == {"prefill_of_bf16_peak": 0.65, "prefill_of_int8_peak": 0.43, "decode_of_bandwidth": 0.5}
    assert fractions({"prefill_tok_s": 1.0}, peak) == {}


def test_linear_params_agree_between_the_gguf_header_and_the_dense_folder(models_dir, small_generator_dir):
    gguf_dir = cache.prepare(REGISTRY[SMOL], models_dir, progress=False, runtime="llamacpp").path
    from_header = bench.linear_params(gguf_dir)
    assert from_header and from_header == bench.linear_params(small_generator_dir)
    assert bench.weight_bytes(gguf_dir) == (gguf_dir / "model.gguf").stat().st_size


@pytest.mark.parametrize("runtimes", [("transformers", "openvino")])
def test_bench_rows_and_table(small_settings, runtimes):
    settings = small_settings.model_copy(update={"threads": 2})
    rows = bench.run_model_bench(settings, ("fp32",), runtimes=runtimes, prefill_tokens=64, new_tokens=8,
                                 checks=False, embedder=False)
    peak, *gens = rows
    assert peak["kind"] == "peak" and peak["bf16_gflops"] > 0, peak
    assert [g["runtime"] for g in gens] == list(runtimes), gens
    for g in gens:
        assert g["decode_tok_s"] > 0 and g["prefill_tok_s"] > 0 and g["linear_params"] > 0 and g["weight_bytes"] > 0
        assert 0 < fractions(g, peak)["prefill_of_bf16_peak"]
    table = bench.format_table(rows)
    assert "cpu: " in table and "class " in table and "prefill/bf16 peak" in table and "GEMV" in table
