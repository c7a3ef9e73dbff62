"""What 2 cores can compute at best, so each runtime's speed reads as a fraction of it.

Prefill is matrix-matrix work (compute-bound): measured as GEMM throughput at a transformer's shape
(1,024 tokens x 1,536 -> 8,960, Qwen2.5-1.5B's MLP) in fp32, bf16 and int8 (`torch._int_mm`). Decode is
one token against every weight (memory-bound): measured as the bandwidth of a bf16 matrix-vector product
over a matrix much larger than the caches. A runtime's prefill fraction is 2 x linear parameters x
prompt tokens/s over a peak; its decode fraction is weight bytes x tokens/s over the bandwidth.
"""

from __future__ import annotations

import time


def _best_seconds(fn, repeat: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_peak(threads: int, m: int = 1024, k: int = 1536, n: int = 8960) -> dict:
    """GFLOP/s (GOP/s for int8) of one GEMM per dtype, and GB/s of a bf16 GEMV, on `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    out = {"threads": threads, "shape": [m, k, n]}
    with torch.inference_mode():
        for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            out[f"{name}_gflops"] = round(2 * m * k * n / _best_seconds(lambda: a @ b) / 1e9, 1)
        a8 = torch.randint(-64, 64, (m, k), dtype=torch.int8)
        b8 = torch.randint(-64, 64, (k, n), dtype=torch.int8)
        out["int8_gops"] = round(2 * m * k * n / _best_seconds(lambda: torch._int_mm(a8, b8)) / 1e9, 1)
        w = torch.randn(8192, 16384, dtype=torch.bfloat16)  # 256 MiB: far beyond any cache
        x = torch.randn(16384, dtype=torch.bfloat16)
        out["bf16_gemv_gb_s"] = round(w.numel() * 2 / _best_seconds(lambda: w @ x) / 1e9, 1)
    return out


def fractions(row: dict, peak: dict) -> dict:
    """A generator row's prefill as a fraction of the bf16 and int8 peaks, and its decode of the bandwidth."""
    out = {}
    params, prefill = row.get("linear_params"), row.get("prefill_tok_s")
    if params and prefill:
        flops = 2 * params * prefill
        out["prefill_of_bf16_peak"] = round(flops / (peak["bf16_gflops"] * 1e9), 2)
        out["prefill_of_int8_peak"] = round(flops / (peak["int8_gops"] * 1e9), 2)
    if row.get("weight_bytes") and row.get("decode_tok_s"):
        out["decode_of_bandwidth"] = round(row["weight_bytes"] * row["decode_tok_s"] / (peak["bf16_gemv_gb_s"] * 1e9), 2)
    return out
