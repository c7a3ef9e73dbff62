"""Model benchmark: generator load time, prefill and decode speed, peak memory and check answers per mode.

Each measurement runs in a fresh child process (`python -m rag_bench.models --child ...`), so peak RSS
and load time belong to that mode alone and one mode's memory never inflates the next one's figure.

Per generator configuration (a transformers mode, or the llamacpp runtime with given llama.cpp settings):
* `load_s`       `Generator.load` / `LlamaCppGenerator.load` (after imports), including int8 quantization where asked;
* `prefill_tok_s` uncached prompt tokens / prefill time of a ~500-token prompt (after one warm-up call);
* `decode_tok_s`  tokens / time of up to 128 greedy tokens after the first (prefill excluded);
* `peak_rss_mb`   the child's peak resident memory;
* `answer_zh`, `answer_en`: greedy answers to two fixed check questions, so a mode that changes answers shows.

`--prefill-tokens` and `--new-tokens` change the prompt and decode lengths; `--runtimes` adds the
llamacpp runtime (the prepared GGUF folder, `rag models prepare NAME --runtime llamacpp`), and
`--llamacpp-sweep` runs it once per llama.cpp setting in `LLAMACPP_SWEEP` (without the answer checks)
to find the fastest prefill on this CPU.

Embedder (when a prepared folder is given or the configured embedder is already prepared): load time,
sentences/s over a fixed mixed zh/en batch, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from rag import offline as _offline  # noqa: F401  (must run before transformers is imported)

CHECKS = (
    {
        "id": "zh",
        "passage": "明长城东起鸭绿江，西至嘉峪关，全长约8851.8公里。",
        "question": "明长城全长多少公里？",
        "expect": "8851",
    },
    {
        "id": "en",
        "passage": "The Eiffel Tower in Paris was completed in 1889. It is 330 metres tall and was the tallest "
        "man-made structure in the world until 1930.",
        "question": "How tall is the Eiffel Tower?",
        "expect": "330",
    },
)

_FILLER = (
    "The library opens at nine in the morning and closes at six in the evening on weekdays. ",
    "图书馆周一至周五上午九点开门，下午六点关门，周末只开放半天。",
    "Members may borrow up to ten books at a time for a period of three weeks. ",
    "会员每次最多可借十本书，借期为三周，可以在网上续借一次。",
)
PREFILL_TARGET_TOKENS = 500
DECODE_TOKENS = 128
DECODE_PROMPT = "Write a long, detailed essay about the history of printing, from woodblocks to laser printers."


def check_messages(check: dict) -> list[dict]:
    """The plain answering prompt used for the checks: passage, then the question."""
    return [{"role": "user", "content": f"{check['passage']}\n\n根据上面的内容回答：{check['question']}"}]


# llama.cpp settings tried by `--llamacpp-sweep` (threads stay at the bench's thread count). `{}` is
# LlamaCppGenerator's defaults: n_batch 512, n_ubatch 512, flash attention auto, f16 KV cache.
LLAMACPP_SWEEP: tuple[dict, ...] = (
    {},
    {"n_batch": 2048},
    {"n_batch": 256, "n_ubatch": 256},
    {"n_batch": 1024, "n_ubatch": 1024},
    {"flash_attn": "on"},
    {"flash_attn": "off"},
    {"kv_type": "q8_0", "flash_attn": "on"},
    {"threads_batch": 1},
)


def _prefill_messages(gen, target: int = PREFILL_TARGET_TOKENS) -> list[dict]:
    """A deterministic prompt of about `target` tokens (counted exactly)."""
    body, i = "", 0
    question = "\n\n根据上面的内容回答：图书馆几点关门？"
    while gen.prompt_tokens([{"role": "user", "content": body + question}]) < target:
        body += _FILLER[i % len(_FILLER)]
        i += 1
    return [{"role": "user", "content": body + question}]


def weight_bytes(folder: Path) -> int:
    """Bytes of weights a decode step reads: the folder's weight files (GGUF, safetensors, OpenVINO .bin)."""
    return sum(p.stat().st_size for p in Path(folder).iterdir()
               if p.suffix in (".gguf", ".safetensors") or p.name == "openvino_model.bin")


def linear_params(folder: Path) -> int | None:
    """Parameters of the transformer blocks' matrices (what a prompt token multiplies): from the GGUF facts
    a GGUF-derived folder's manifest records, else counted from a safetensors folder's tensor shapes."""
    manifest = Path(folder) / "manifest.json"
    if manifest.is_file():
        known = (json.loads(manifest.read_text()).get("gguf") or {}).get("linear_params")
        if known:
            return int(known)
    files = list(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for path in files:
        with safe_open(str(path), "pt") as fh:
            for key in fh.keys():
                shape = fh.get_slice(key).get_shape()
                if ".layers." in key and len(shape) == 2:
                    total += shape[0] * shape[1]
    return total


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is KiB on Linux


# ---------------------------------------------------------------- children (one measurement each)


def bench_generator(folder: Path, mode: str, threads: int, model_id: str, *, runtime: str = "transformers",
                    llama: dict | None = None, prefill_tokens: int = PREFILL_TARGET_TOKENS,
                    new_tokens: int = DECODE_TOKENS, checks: bool = True) -> dict:
    t0 = time.monotonic()
    if runtime == "llamacpp":
        from rag.models.llamacpp import LlamaCppGenerator

        gen = LlamaCppGenerator.load(Path(folder), model_id=model_id, threads=threads, **(llama or {}))
        n_threads = gen.threads
        mode = gen.mode
    elif runtime == "openvino":
        from rag.models.openvino_runtime import OpenVinoGenerator

        gen = OpenVinoGenerator.load(Path(folder), model_id=model_id, threads=threads)
        n_threads = gen.threads
        mode = gen.mode
    else:
        import torch

        from rag.models.generator import Generator

        gen = Generator.load(Path(folder), mode=mode, threads=threads, model_id=model_id)
        n_threads = torch.get_num_threads()
    load_s = time.monotonic() - t0

    t0 = time.monotonic()
    gen.generate([{"role": "user", "content": "Hi"}], max_new_tokens=2)  # warm-up: first-call kernel setup
    warmup_s = time.monotonic() - t0

    pre = gen.generate(_prefill_messages(gen, prefill_tokens), max_new_tokens=1)
    dec = gen.generate([{"role": "user", "content": DECODE_PROMPT}], max_new_tokens=new_tokens)
    decode_s = (dec.wall_ms - dec.prefill_ms) / 1000.0
    prefilled = pre.prompt_tokens - pre.cached_prompt_tokens  # llama.cpp reuses a shared prefix (the system prompt)
    row = {
        "kind": "generator",
        "model": model_id,
        "weight_bytes": weight_bytes(Path(folder)),
        "linear_params": linear_params(Path(folder)),
        "runtime": runtime,
        "mode": mode,
        "llama": {**getattr(gen, "params", {}), "set": llama or {}} if runtime == "llamacpp" else None,
        "threads": n_threads,
        "load_s": round(load_s, 2),
        "warmup_s": round(warmup_s, 2),
        "prefill_prompt_tokens": prefilled,
        "prefill_tok_s": round(prefilled / (pre.prefill_ms / 1000.0), 1),
        "decode_tokens": dec.completion_tokens,
        # the first new token comes out of the prefill; the rest are one decode step each
        "decode_tok_s": round((dec.completion_tokens - 1) / decode_s, 1) if dec.completion_tokens > 1 else None,
    }
    for check in CHECKS if checks else ():
        c = gen.generate(check_messages(check), max_new_tokens=64)
        row[f"answer_{check['id']}"] = c.text
        row[f"ok_{check['id']}"] = check["expect"] in c.text
    row["peak_rss_mb"] = round(_peak_rss_mb(), 0)
    row["loadavg_1m"] = round(os.getloadavg()[0], 2)  # > cores means other processes competed for CPU
    return row


def bench_embedder(folder: Path, threads: int, batch_size: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads if threads > 0 else (os.cpu_count() or 1))
    t0 = time.monotonic()
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    load_s = time.monotonic() - t0
    sentences = [(_FILLER[i % len(_FILLER)] * (1 + i % 3)).strip() for i in range(256)]
    model.encode(sentences[:8], batch_size=batch_size)  # warm-up
    t0 = time.monotonic()
    model.encode(sentences, batch_size=batch_size, normalize_embeddings=True)
    seconds = time.monotonic() - t0
    return {
        "kind": "embedder",
        "model": str(folder),
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "sentences_s": round(len(sentences) / seconds, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 0),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _run_child(args: list[str], timeout: float = 1800) -> dict:
    cmd = [sys.executable, "-m", "rag_bench.models", "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-2000:]
        return {"error": f"child exited {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


# ---------------------------------------------------------------- driver


def _resolve_generator(settings, runtime: str = "transformers") -> tuple[Path, str]:
    from rag.models.loader import resolve

    where, _ = resolve(settings.generator, settings, prepare=True, progress=True, runtime=runtime)
    return Path(where), settings.generator


def _resolve_embedder(settings) -> Path | None:
    from rag.errors import ModelError
    from rag.models.loader import resolve

    try:
        where, _ = resolve(settings.embedder, settings, prepare=False)
    except ModelError:
        return None
    where = Path(where)
    return where if where.is_dir() else None


def run_model_bench(
    settings,
    modes: tuple[str, ...] = ("fp32", "int8-dynamic"),
    *,
    generator_folder: Path | None = None,
    embedder_folder: Path | None = None,
    threads: int | None = None,
    runtimes: tuple[str, ...] = ("transformers",),
    llamacpp_settings: tuple[dict, ...] = ({},),
    llamacpp_folder: Path | None = None,
    prefill_tokens: int = PREFILL_TARGET_TOKENS,
    new_tokens: int = DECODE_TOKENS,
    checks: bool = True,
    embedder: bool = True,
) -> list[dict]:
    """One row per generator configuration, one after another (and one for the embedder when a prepared
    folder is available): each transformers mode, then the llamacpp runtime once per llama.cpp setting."""
    threads = settings.threads if threads is None else threads
    rows = [{"kind": "peak", **_run_child([json.dumps({"kind": "peak", "threads": threads})])}]
    common = {"threads": threads, "prefill_tokens": prefill_tokens, "new_tokens": new_tokens, "checks": checks}
    if "transformers" in runtimes:
        from rag.models.runtimes import RUNTIMES

        for mode in modes:  # each mode loads the folder stored in its dtype (bf16: the .bf16 folder), as the service does
            if generator_folder is None:
                folder, model_id = _resolve_generator(settings, RUNTIMES["transformers"].folder_for(mode))
            else:
                folder, model_id = generator_folder, Path(generator_folder).name
            row = _run_child([json.dumps({**common, "kind": "generator", "folder": str(folder), "mode": mode,
                                          "model_id": model_id, "runtime": "transformers"})])
            row.setdefault("kind", "generator")
            row.setdefault("runtime", "transformers")
            row.setdefault("mode", mode)
            rows.append(row)
    if "openvino" in runtimes:
        folder, model_id = _resolve_generator(settings, "openvino")
        row = _run_child([json.dumps({**common, "kind": "generator", "folder": str(folder), "mode": "openvino",
                                      "model_id": model_id, "runtime": "openvino"})])
        rows.append({"kind": "generator", "runtime": "openvino", "mode": "openvino", **row})
    if "llamacpp" in runtimes:
        if llamacpp_folder is None:
            llamacpp_folder, model_id = _resolve_generator(settings, "llamacpp")
        else:
            model_id = Path(llamacpp_folder).name
        for llama in llamacpp_settings:
            row = _run_child([json.dumps({**common, "kind": "generator", "folder": str(llamacpp_folder), "mode": "gguf",
                                          "model_id": model_id, "runtime": "llamacpp", "llama": llama})])
            row.setdefault("kind", "generator")
            row.setdefault("runtime", "llamacpp")
            row.setdefault("mode", "gguf")
            row.setdefault("llama", {"set": llama})
            rows.append(row)
    if embedder:
        if embedder_folder is None:
            embedder_folder = _resolve_embedder(settings)
        if embedder_folder is not None and Path(embedder_folder).is_dir():
            rows.append(_run_child([json.dumps({"kind": "embedder", "folder": str(embedder_folder), "threads": threads,
                                                "batch_size": settings.embed_batch_size})]))
    return rows


def _label(row: dict) -> str:
    if row.get("runtime") != "llamacpp":
        return row.get("mode", "?")
    llama = (row.get("llama") or {}).get("set") or {}
    return "llamacpp" + ("".join(f" {k}={v}" for k, v in llama.items()) or " (defaults)")


def format_table(rows: list[dict]) -> str:
    from rag.models.cpu import read_cpu
    from rag.models.runtimes import auto_runtime
    from rag_bench.peak import fractions

    cpu = read_cpu()
    out = [f"machine: {platform.machine()} {os.cpu_count()} cpu(s), python {platform.python_version()}",
           f"cpu: {cpu.model}; class {cpu.cpu_class} (RAG_GENERATOR_RUNTIME=auto runs {auto_runtime()}); "
           f"flags: {' '.join(sorted(f for f in cpu.flags if f.startswith(('avx512', 'amx', 'avx2', 'avx_vnni'))))}"]
    peak = next((r for r in rows if r.get("kind") == "peak" and "error" not in r), None)
    if peak:
        out.append(f"peak on {peak['threads']} threads: fp32 {peak['fp32_gflops']} GFLOP/s, bf16 {peak['bf16_gflops']} "
                   f"GFLOP/s, int8 {peak['int8_gops']} GOP/s (GEMM {'x'.join(map(str, peak['shape']))}); "
                   f"bf16 GEMV {peak['bf16_gemv_gb_s']} GB/s")
    gens = [r for r in rows if r.get("kind") == "generator"]
    if gens:
        out.append("")
        width = max(14, *(len(_label(r)) + 2 for r in gens))
        out.append(f"{'configuration':<{width}}{'threads':>8}{'load s':>8}{'prefill tok/s':>15}{'decode tok/s':>14}"
                   f"{'peak RSS MB':>13}{'load avg':>10}{'prefill/bf16 peak':>19}{'prefill/int8 peak':>19}"
                   f"{'decode/bandwidth':>18}")
        for r in gens:
            if "error" in r:
                out.append(f"{_label(r):<{width}} ERROR {r['error']}")
                continue
            frac = fractions(r, peak) if peak else {}
            out.append(
                f"{_label(r):<{width}}{r['threads']:>8}{r['load_s']:>8.2f}{r['prefill_tok_s']:>15.1f}"
                f"{(r['decode_tok_s'] or 0):>14.1f}{r['peak_rss_mb']:>13.0f}{r.get('loadavg_1m', 0):>10.2f}"
                + "".join(f"{frac.get(k, float('nan')):>{w}.2f}" for k, w in (("prefill_of_bf16_peak", 19),
                          ("prefill_of_int8_peak", 19), ("decode_of_bandwidth", 18)))
            )
        out.append("(load avg: 1-minute system load at the end of the run; above the core count, other processes competed)")
        out.append(f"(prefill over {gens[0].get('prefill_prompt_tokens', '?')} prompt tokens; "
                   f"decode over {gens[0].get('decode_tokens', '?')} new tokens)")
        out.append("")
        checked = [r for r in gens if "error" not in r and "answer_zh" in r]
        for check in CHECKS if checked else ():
            out.append(f"check {check['id']}: {check['question']}  (expect {check['expect']})")
            for r in checked:
                mark = "ok " if r.get(f"ok_{check['id']}") else "BAD"
                out.append(f"  {mark} {_label(r):<{width}}{r.get('answer_' + check['id'], '')!r}")
        answers = {(r.get("answer_zh"), r.get("answer_en")) for r in checked}
        if len(checked) > 1:
            out.append("answers identical across modes" if len(answers) == 1 else "ANSWERS DIFFER between modes")
    for r in rows:
        if r.get("kind") == "embedder":
            out.append("")
            out.append(f"embedder {r['model']}: load {r['load_s']:.2f} s, {r['sentences_s']:.1f} sentences/s, "
                       f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['threads']} threads)")
        elif "error" in r and r.get("kind") != "generator":
            out.append(f"{r.get('kind', 'embedder')} ERROR {r['error']}")
    return "\n".join(out)


def main(
    settings=None,
    modes: tuple[str, ...] = ("fp32", "int8-dynamic"),
    *,
    generator_folder: Path | None = None,
    embedder_folder: Path | None = None,
    threads: int | None = None,
    as_json: bool = False,
    **options,
) -> list[dict]:
    """Run the benchmark and print a table (or JSON rows). `options` go to `run_model_bench`."""
    if settings is None:
        from rag.settings import Settings

        settings = Settings()
    rows = run_model_bench(settings, modes, generator_folder=generator_folder,
                           embedder_folder=embedder_folder, threads=threads, **options)
    print(json.dumps(rows, ensure_ascii=False, indent=2) if as_json else format_table(rows))
    return rows


def _child_main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    if spec["kind"] == "generator":
        row = bench_generator(Path(spec["folder"]), spec["mode"], int(spec["threads"]), spec["model_id"],
                              runtime=spec.get("runtime", "transformers"), llama=spec.get("llama"),
                              prefill_tokens=int(spec.get("prefill_tokens", PREFILL_TARGET_TOKENS)),
                              new_tokens=int(spec.get("new_tokens", DECODE_TOKENS)), checks=bool(spec.get("checks", True)))
    elif spec["kind"] == "peak":
        from rag_bench.peak import measure_peak

        row = {"kind": "peak", **measure_peak(int(spec["threads"]) or (os.cpu_count() or 1))}
    elif spec["kind"] == "embedder":
        row = bench_embedder(Path(spec["folder"]), int(spec["threads"]), int(spec["batch_size"]))
    else:
        raise SystemExit(f"unknown child kind {spec['kind']}")
    print(json.dumps(row, ensure_ascii=False))


def _parse_runtimes(value: str) -> tuple[str, ...]:
    runtimes = tuple(r.strip() for r in value.split(",") if r.strip())
    bad = [r for r in runtimes if r not in ("transformers", "llamacpp", "openvino")]
    if bad:
        raise SystemExit(f"unknown runtime(s) {bad}: use transformers, llamacpp and/or openvino")
    return runtimes


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
    else:
        p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        p.add_argument("--modes", default="fp32,int8-dynamic")
        p.add_argument("--runtimes", default="transformers", help="transformers, llamacpp and/or openvino, comma-separated")
        p.add_argument("--llamacpp-sweep", action="store_true", help="run llamacpp once per setting in LLAMACPP_SWEEP")
        p.add_argument("--llamacpp-folder", type=Path)
        p.add_argument("--prefill-tokens", type=int, default=PREFILL_TARGET_TOKENS)
        p.add_argument("--new-tokens", type=int, default=DECODE_TOKENS)
        p.add_argument("--no-checks", action="store_true")
        p.add_argument("--no-embedder", action="store_true")
        p.add_argument("--generator-folder", type=Path)
        p.add_argument("--embedder-folder", type=Path)
        p.add_argument("--threads", type=int)
        p.add_argument("--json", action="store_true")
        a = p.parse_args()
        main(modes=tuple(m for m in a.modes.split(",") if m), generator_folder=a.generator_folder,
             embedder_folder=a.embedder_folder, threads=a.threads, as_json=a.json,
             runtimes=_parse_runtimes(a.runtimes), llamacpp_settings=LLAMACPP_SWEEP if a.llamacpp_sweep else ({},),
             llamacpp_folder=a.llamacpp_folder, prefill_tokens=a.prefill_tokens, new_tokens=a.new_tokens,
             checks=not a.no_checks, embedder=not a.no_embedder)
