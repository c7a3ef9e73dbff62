"""Model benchmark: generator load time, prefill and decode speed, peak memory and check answers per mode.

Each measurement runs in a fresh child process (`python -m rag.bench.models --child ...`), so peak RSS
and load time belong to that mode alone and one mode's memory never inflates the next one's figure.

Per generator mode:
* `load_s`       `Generator.load` (after imports), including int8 quantization where asked;
* `prefill_tok_s` prompt tokens / prefill time of a ~500-token prompt (after one warm-up call);
* `decode_tok_s`  tokens / time of up to 128 greedy tokens after the first (prefill excluded);
* `peak_rss_mb`   the child's peak resident memory;
* `answer_zh`, `answer_en`: greedy answers to two fixed check questions, so a mode that changes answers shows.

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


def _prefill_messages(gen) -> list[dict]:
    """A deterministic prompt of about PREFILL_TARGET_TOKENS tokens (counted exactly)."""
    body, i = "", 0
    question = "\n\n根据上面的内容回答：图书馆几点关门？"
    while gen.prompt_tokens([{"role": "user", "content": body + question}]) < PREFILL_TARGET_TOKENS:
        body += _FILLER[i % len(_FILLER)]
        i += 1
    return [{"role": "user", "content": body + question}]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is KiB on Linux


# ---------------------------------------------------------------- children (one measurement each)


def bench_generator(folder: Path, mode: str, threads: int, model_id: str) -> dict:
    import torch

    from rag.models.generator import Generator

    t0 = time.monotonic()
    gen = Generator.load(Path(folder), mode=mode, threads=threads, model_id=model_id)
    load_s = time.monotonic() - t0

    t0 = time.monotonic()
    gen.generate([{"role": "user", "content": "Hi"}], max_new_tokens=2)  # warm-up: first-call kernel setup
    warmup_s = time.monotonic() - t0

    pre = gen.generate(_prefill_messages(gen), max_new_tokens=1)
    dec = gen.generate([{"role": "user", "content": DECODE_PROMPT}], max_new_tokens=DECODE_TOKENS)
    decode_s = (dec.wall_ms - dec.prefill_ms) / 1000.0
    row = {
        "kind": "generator",
        "model": model_id,
        "mode": mode,
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "warmup_s": round(warmup_s, 2),
        "prefill_prompt_tokens": pre.prompt_tokens,
        "prefill_tok_s": round(pre.prompt_tokens / (pre.prefill_ms / 1000.0), 1),
        "decode_tokens": dec.completion_tokens,
        # the first new token comes out of the prefill; the rest are one decode step each
        "decode_tok_s": round((dec.completion_tokens - 1) / decode_s, 1) if dec.completion_tokens > 1 else None,
    }
    for check in CHECKS:
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
    cmd = [sys.executable, "-m", "rag.bench.models", "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-2000:]
        return {"error": f"child exited {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


# ---------------------------------------------------------------- driver


def _resolve_generator(settings) -> tuple[Path, str]:
    from rag.models.loader import resolve

    where, _ = resolve(settings.generator, settings, prepare=True, progress=True)
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
) -> list[dict]:
    """One row per generator mode (and one for the embedder when a prepared folder is available)."""
    threads = settings.threads if threads is None else threads
    if generator_folder is None:
        generator_folder, model_id = _resolve_generator(settings)
    else:
        model_id = Path(generator_folder).name
    rows = []
    for mode in modes:
        row = _run_child(["generator", str(generator_folder), mode, str(threads), model_id])
        row.setdefault("kind", "generator")
        row.setdefault("mode", mode)
        rows.append(row)
    if embedder_folder is None:
        embedder_folder = _resolve_embedder(settings)
    if embedder_folder is not None and Path(embedder_folder).is_dir():
        rows.append(_run_child(["embedder", str(embedder_folder), str(threads), str(settings.embed_batch_size)]))
    return rows


def format_table(rows: list[dict]) -> str:
    out = [f"machine: {platform.machine()} {os.cpu_count()} cpu(s), python {platform.python_version()}"]
    gens = [r for r in rows if r.get("kind") == "generator"]
    if gens:
        out.append("")
        out.append(f"{'mode':<14}{'threads':>8}{'load s':>8}{'prefill tok/s':>15}{'decode tok/s':>14}{'peak RSS MB':>13}{'load avg':>10}")
        for r in gens:
            if "error" in r:
                out.append(f"{r.get('mode', '?'):<14} ERROR {r['error']}")
                continue
            out.append(
                f"{r['mode']:<14}{r['threads']:>8}{r['load_s']:>8.2f}{r['prefill_tok_s']:>15.1f}"
                f"{(r['decode_tok_s'] or 0):>14.1f}{r['peak_rss_mb']:>13.0f}{r.get('loadavg_1m', 0):>10.2f}"
            )
        out.append("(load avg: 1-minute system load at the end of the run; above the core count, other processes competed)")
        out.append(f"(prefill over {gens[0].get('prefill_prompt_tokens', '?')} prompt tokens; "
                   f"decode over {gens[0].get('decode_tokens', '?')} new tokens)")
        out.append("")
        for check in CHECKS:
            out.append(f"check {check['id']}: {check['question']}  (expect {check['expect']})")
            for r in gens:
                if "error" in r:
                    continue
                mark = "ok " if r.get(f"ok_{check['id']}") else "BAD"
                out.append(f"  {mark} {r['mode']:<14}{r.get('answer_' + check['id'], '')!r}")
        answers = {(r.get("answer_zh"), r.get("answer_en")) for r in gens if "error" not in r}
        if len(gens) > 1:
            out.append("answers identical across modes" if len(answers) == 1 else "ANSWERS DIFFER between modes")
    for r in rows:
        if r.get("kind") == "embedder":
            out.append("")
            out.append(f"embedder {r['model']}: load {r['load_s']:.2f} s, {r['sentences_s']:.1f} sentences/s, "
                       f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['threads']} threads)")
        elif "error" in r and r.get("kind") != "generator":
            out.append(f"embedder ERROR {r['error']}")
    return "\n".join(out)


def main(
    settings=None,
    modes: tuple[str, ...] = ("fp32", "int8-dynamic"),
    *,
    generator_folder: Path | None = None,
    embedder_folder: Path | None = None,
    threads: int | None = None,
    as_json: bool = False,
) -> list[dict]:
    """Run the benchmark and print a table (or JSON rows)."""
    if settings is None:
        from rag.settings import Settings

        settings = Settings()
    rows = run_model_bench(settings, modes, generator_folder=generator_folder,
                           embedder_folder=embedder_folder, threads=threads)
    print(json.dumps(rows, ensure_ascii=False, indent=2) if as_json else format_table(rows))
    return rows


def _child_main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "generator":
        folder, mode, threads, model_id = argv[1], argv[2], int(argv[3]), argv[4]
        row = bench_generator(Path(folder), mode, threads, model_id)
    elif kind == "embedder":
        folder, threads, batch = argv[1], int(argv[2]), int(argv[3])
        row = bench_embedder(Path(folder), threads, batch)
    else:
        raise SystemExit(f"unknown child kind {kind}")
    print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
    else:
        p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        p.add_argument("--modes", default="fp32,int8-dynamic")
        p.add_argument("--generator-folder", type=Path)
        p.add_argument("--embedder-folder", type=Path)
        p.add_argument("--threads", type=int)
        p.add_argument("--json", action="store_true")
        a = p.parse_args()
        main(modes=tuple(m for m in a.modes.split(",") if m), generator_folder=a.generator_folder,
             embedder_folder=a.embedder_folder, threads=a.threads, as_json=a.json)
