"""`rag bench embed`: passage-embedding rate of one worker, in real tokens/s, per variant, thread count and batch size.

Why: ingestion is ~90% embedding, and the cheapest scale-out is more tokens per worker before more
workers. Texts/s alone misleads (a 43-character Chinese sentence and a 256-token chunk differ ten
times in work), so the figure is real tokens (specials included, padding excluded) per second.

Texts are the project's own: Debian reference chapters (English and Chinese) parsed and chunked by
`ingest` exactly as uploads are (whole chunks up to the chunk cap), plus short sentences from the
same documents (the chunker's sentence splitter).

Variants, all over the same texts:
* `st-fp32`   before #14: `Embedder.embed_passages` in fp32 (sentence-transformers, batches sorted by characters);
* `st-bf16`   `Embedder.load(precision="bf16")`: the same call, transformer cast to bf16 (the default where bf16 is native);
* `fp32`      the same weights through `PaddedEncoder` (batches sorted by exact token count);
* `bf16`      the model cast to bfloat16 (AMX/AVX512-BF16 matmuls); pooling in fp32;
* `int8`      `torch.ao.quantization.quantize_dynamic` on every Linear;
* `ort-fp32`, `ort-int8`  ONNX Runtime on a local `torch.onnx` export (needs the `onnx` package; skipped without it).

Each variant reports the min/mean cosine of its vectors against `st-fp32` on all texts, and the mean
top-10 overlap of a small retrieval (short sentences as queries over the chunks) against `st-fp32`.

Timings on a shared machine are noisy: cells are measured interleaved (every variant once per
round, in a rotated order), and the median of the rounds is reported, so compare variants as
ratios within one run rather than across runs.

    python -m rag_bench.embed_rate --threads 1,2 --batches 8,16,32,64 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.models.embedder import Embedder, PaddedEncoder, to_bf16

DEFAULT_DOCS = tuple(Path("/usr/share/debian-reference") / f"ch0{i}.{lang}.html" for lang in ("en", "zh-cn")
                     for i in (1, 2))
VARIANTS = ("st-fp32", "st-bf16", "fp32", "bf16", "int8", "ort-fp32", "ort-int8")


# ---------------------------------------------------------------- texts


@dataclass
class TextSet:
    name: str
    texts: list[str]


def _chunks_and_sentences(path: Path, embedder: Embedder, cap: int) -> tuple[list[str], list[str]]:
    from ingest.chunker import chunk_document, split_sentences
    from ingest.parsers import parse_document

    doc = parse_document(path.read_bytes(), path.name)
    chunks = [c.text for c in chunk_document(doc, embedder.count_tokens, cap)]
    sentences = [doc.text[s:e] for s, e in split_sentences(doc.text)]
    return chunks, [s for s in sentences if 10 <= len(s) <= 120 and "\n" not in s]


def build_sets(embedder: Embedder, docs: Sequence[Path] = DEFAULT_DOCS, *, chunks: int = 32,
               sentences: int = 64, cap: int = 256, seed: int = 0) -> list[TextSet]:
    """Chunks (up to `cap` tokens) and short sentences per language, sampled reproducibly."""
    pools: dict[str, tuple[list[str], list[str]]] = {}
    for path in docs:
        lang = "zh" if ".zh" in path.name else "en"
        c, s = _chunks_and_sentences(path, embedder, min(cap, embedder.max_content_tokens))
        pc, ps = pools.setdefault(lang, ([], []))
        pc.extend(c)
        ps.extend(s)
    rng = random.Random(seed)
    out = []
    for lang, (pc, ps) in sorted(pools.items()):
        out.append(TextSet(f"{lang}-chunks", rng.sample(pc, min(chunks, len(pc)))))
        out.append(TextSet(f"{lang}-sentences", rng.sample(ps, min(sentences, len(ps)))))
    return out


def real_tokens(embedder: Embedder, texts: Sequence[str]) -> int:
    """Tokens the model really computes for passages: prefix and specials in, padding out, truncated at max length."""
    counts = embedder.count_tokens_batch([embedder.passage_prefix + t for t in texts])
    return sum(min(n + 2, embedder.max_seq_length) for n in counts)


def padding_fraction(lengths: Sequence[int], batch_size: int) -> float:
    """Share of padded positions when `lengths` are batched in the given order."""
    real = padded = 0
    for start in range(0, len(lengths), batch_size):
        part = lengths[start:start + batch_size]
        real += sum(part)
        padded += max(part) * len(part)
    return 1 - real / padded if padded else 0.0


def padding_table(embedder: Embedder, sets: Sequence[TextSet], batches: Sequence[int]) -> list[dict]:
    """Padding of today's order (by characters, longest first) against the order by exact token count."""
    rows = []
    for ts in sets + [TextSet("all", [t for s in sets for t in s.texts])]:
        texts = [embedder.passage_prefix + t for t in ts.texts]
        lengths = [n + 2 for n in embedder.count_tokens_batch(texts)]
        by_chars = [lengths[i] for i in np.argsort([-len(t) for t in texts], kind="stable")]
        for b in batches:
            rows.append({"set": ts.name, "batch": b, "by_chars": padding_fraction(by_chars, b),
                         "by_tokens": padding_fraction(sorted(lengths, reverse=True), b)})
    return rows


# ---------------------------------------------------------------- variants


@dataclass
class Variant:
    """A way to embed passages: `encode(texts, batch_size)` gives L2-normalised fp32 rows in input order;
    `threads(n)` sets its intra-op threads (torch's global pool, or a session per count for ONNX Runtime)."""

    name: str
    encode: Callable[[list[str], int], np.ndarray]
    threads: Callable[[int], None]
    queries: Callable[[list[str]], np.ndarray] | None = None


def _torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def torch_variants(embedder: Embedder, names: Sequence[str]) -> list[Variant]:
    import torch

    bert = embedder.model[0].auto_model
    out = []
    for name in names:
        if name.startswith("st-"):
            e = embedder if name == "st-fp32" else _bf16_copy(embedder)
            out.append(Variant(name, lambda t, b, e=e: _st_encode(e, t, b), _torch_threads, e.embed_queries))
            continue
        if name == "fp32":
            model = bert
        elif name == "bf16":
            model = copy.deepcopy(bert).to(torch.bfloat16)
        elif name == "int8":
            model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(bert), {torch.nn.Linear}, dtype=torch.qint8)
        else:
            continue
        enc = PaddedEncoder.from_embedder(embedder, model)
        out.append(Variant(name, lambda t, b, e=enc: e.encode([embedder.passage_prefix + x for x in t], b),
                           _torch_threads, lambda q, e=enc: e.encode([embedder.query_prefix + x for x in q], 64)))
    return out


def _st_encode(embedder: Embedder, texts: list[str], batch_size: int) -> np.ndarray:
    embedder.batch_size = batch_size
    return embedder.embed_passages(texts)


def _bf16_copy(embedder: Embedder) -> Embedder:
    """What `Embedder.load(precision="bf16")` gives, without loading the folder again."""
    model = copy.deepcopy(embedder.model)
    to_bf16(model)
    return Embedder(model, embedder.model_id, embedder.query_prefix, embedder.passage_prefix, precision="bf16")


def export_onnx(embedder: Embedder, folder: Path) -> dict[str, Path]:
    """fp32 export of the transformer (and a dynamic int8 copy); needs the `onnx` package, downloads nothing."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class _Hidden(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    fp32 = folder / "e5.onnx"
    x = embedder.model.tokenizer(["passage: 例子 example", "a"], return_tensors="pt", padding=True)
    axes = {"b": 0, "s": 1}
    torch.onnx.export(_Hidden(embedder.model[0].auto_model).eval(), (x["input_ids"], x["attention_mask"]), str(fp32),
                      input_names=["input_ids", "attention_mask"], output_names=["hidden"], opset_version=17,
                      dynamic_axes={k: {v: n for n, v in axes.items()} for k in ("input_ids", "attention_mask", "hidden")},
                      dynamo=False)
    int8 = folder / "e5.int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return {"ort-fp32": fp32, "ort-int8": int8}


def ort_variants(embedder: Embedder, names: Sequence[str], folder: Path) -> tuple[list[Variant], str]:
    """ONNX Runtime variants, or none and the reason (no `onnx` package to export with)."""
    wanted = [n for n in names if n.startswith("ort-")]
    if not wanted:
        return [], ""
    try:
        files = export_onnx(embedder, folder)
    except Exception as exc:  # noqa: BLE001 - an optional variant: reported, not fatal
        return [], f"{type(exc).__name__}: {exc}"
    return [_ort_variant(embedder, n, files[n]) for n in wanted], ""


def _ort_variant(embedder: Embedder, name: str, path: Path) -> Variant:
    import onnxruntime as ort

    state: dict = {}

    def threads(n: int) -> None:
        if state.get("n") != n:
            so = ort.SessionOptions()
            so.intra_op_num_threads = n
            so.inter_op_num_threads = 1
            state.update(n=n, session=None)
            state["session"] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            state["enc"] = PaddedEncoder.from_embedder(embedder, _ort_forward(state["session"]))

    def encode(texts: list[str], batch_size: int, prefix: str = embedder.passage_prefix) -> np.ndarray:
        return state["enc"].encode([prefix + t for t in texts], batch_size)

    return Variant(name, encode, threads, lambda q: encode(q, 64, embedder.query_prefix))


def _ort_forward(session) -> Callable:
    import torch

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out = session.run(None, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})[0]
        return torch.from_numpy(out)

    return forward


# ---------------------------------------------------------------- measuring


@dataclass
class Cell:
    variant: str
    workload: str
    threads: int
    batch: int
    seconds: list[float] = field(default_factory=list)


def time_grid(variants: Sequence[Variant], workloads: dict[str, list[str]], threads: Sequence[int],
              batches: Sequence[int], rounds: int) -> list[Cell]:
    """Every (variant, workload, threads, batch) `rounds` times, variants interleaved in a rotated order."""
    cells: dict[tuple, Cell] = {}
    for n in threads:
        for v in variants:
            v.threads(n)
            v.encode(next(iter(workloads.values()))[:8], 8)  # warm-up (allocator, oneDNN kernels)
        for r in range(rounds):
            order = list(variants[r % len(variants):]) + list(variants[:r % len(variants)])
            for wname, texts in workloads.items():
                for b in batches:
                    for v in order:
                        v.threads(n)
                        t0 = time.perf_counter()
                        v.encode(texts, b)
                        cell = cells.setdefault((v.name, wname, n, b), Cell(v.name, wname, n, b))
                        cell.seconds.append(time.perf_counter() - t0)
    return list(cells.values())


def agreement(variants: Sequence[Variant], sets: Sequence[TextSet], threads: int, batch: int) -> dict[str, dict]:
    """Cosine of each variant's vectors to `st-fp32`'s, and the top-10 overlap of a small retrieval."""
    texts = [t for s in sets for t in s.texts]
    chunks = [t for s in sets if s.name.endswith("chunks") for t in s.texts]
    queries = [t for s in sets if s.name.endswith("sentences") for t in s.texts[:24]]
    ref = None
    out = {}
    for v in variants:
        v.threads(threads)
        vecs, docs, q = v.encode(texts, batch), v.encode(chunks, batch), v.queries(queries)
        top = np.argsort(-(q @ docs.T), axis=1)[:, :10]
        if ref is None:
            ref = (vecs, top)
        cos = np.sum(vecs * ref[0], axis=1)
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, ref[1])])
        out[v.name] = {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()), "top10_overlap": float(overlap)}
    return out


def profile_batch(embedder: Embedder, texts: list[str], threads: int) -> dict[str, float]:
    """Where one fp32 batch's time goes: tokenising, then the forward's ops grouped (ms)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    enc = PaddedEncoder.from_embedder(embedder, embedder.model[0].auto_model)
    texts = [embedder.passage_prefix + t for t in texts]
    t0 = time.perf_counter()
    batch = enc.pad(enc.tokenize(texts))
    tokenize_ms = (time.perf_counter() - t0) * 1000
    enc.forward(*batch)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        enc.forward(*batch)
        total_ms = (time.perf_counter() - t0) * 1000
    groups = {"linear (matmul)": ("aten::addmm", "aten::mm", "aten::linear", "aten::matmul"),
              "attention (sdpa)": ("aten::_scaled_dot_product", "aten::scaled_dot_product", "aten::bmm",
                                   "aten::baddbmm", "aten::_softmax"),
              "layer_norm": ("aten::native_layer_norm",), "gelu": ("aten::gelu",),
              "embedding": ("aten::embedding",)}
    out = {"tokenize_ms": tokenize_ms, "forward_ms": total_ms}
    events = prof.key_averages()
    for group, prefixes in groups.items():
        # self time of the top-level op: children (e.g. mkldnn kernels) are counted inside it
        ms = sum(e.cpu_time_total for e in events if e.key.startswith(prefixes) and e.key in _top_level(prefixes, events))
        out[group + "_ms"] = ms / 1000
    ids, mask = batch
    out["padding"] = 1 - float(mask.sum()) / mask.numel()
    out["seq_len"] = int(mask.shape[1])
    return out


def _top_level(prefixes: tuple[str, ...], events) -> set[str]:
    """The first op of each group that occurs (linear over addmm, sdpa over bmm) so nested ops are not counted twice."""
    keys = [e.key for e in events]
    for p in prefixes:
        hits = {k for k in keys if k.startswith(p)}
        if hits:
            return hits
    return set()


# ---------------------------------------------------------------- report


def _fmt_table(cells: Sequence[Cell], tokens: dict[str, int], counts: dict[str, int]) -> list[str]:
    lines = ["workload    threads batch variant     tokens/s  texts/s  vs st-fp32"]
    base = {(c.workload, c.threads, c.batch): statistics.median(c.seconds) for c in cells if c.variant == "st-fp32"}
    for c in sorted(cells, key=lambda c: (c.workload, c.threads, c.batch)):
        s = statistics.median(c.seconds)
        ratio = base.get((c.workload, c.threads, c.batch), 0) / s
        lines.append(f"{c.workload:<11} {c.threads:>7} {c.batch:>5} {c.variant:<10} {tokens[c.workload] / s:>9.0f}"
                     f" {counts[c.workload] / s:>8.1f}  {ratio:>6.2f}x")
    return lines


def main(*, threads: Sequence[int] = (1, 2), batches: Sequence[int] = (8, 16, 32, 64), rounds: int = 3,
         variants: Sequence[str] = VARIANTS, chunks: int = 32, sentences: int = 64,
         docs: Sequence[Path] = DEFAULT_DOCS, profile: bool = True, settings=None) -> dict:
    """Build the texts, time the grid, check agreement, print the report; returns it as a dict."""
    from rag.models.loader import resolve
    from rag.settings import Settings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = settings or Settings()
    folder, spec = resolve(settings.embedder, settings, prepare=False)
    embedder = Embedder.load(folder, model_id=settings.embedder, query_prefix=spec.query_prefix if spec else "",
                             passage_prefix=spec.passage_prefix if spec else "", precision="fp32")
    sets = build_sets(embedder, docs, chunks=chunks, sentences=sentences)
    workloads = {"chunks": [t for s in sets if s.name.endswith("chunks") for t in s.texts],
                 "sentences": [t for s in sets if s.name.endswith("sentences") for t in s.texts]}
    tokens = {k: real_tokens(embedder, v) for k, v in workloads.items()}
    counts = {k: len(v) for k, v in workloads.items()}
    print(f"texts: {', '.join(f'{s.name} {len(s.texts)} ({real_tokens(embedder, s.texts) / len(s.texts):.0f} tok avg)' for s in sets)}")
    print("padding share (today's char order vs exact token order):")
    for row in padding_table(embedder, sets, batches):
        print(f"  {row['set']:<13} batch {row['batch']:>2}: {row['by_chars']:.3f} vs {row['by_tokens']:.3f}")
    report: dict = {"texts": {s.name: len(s.texts) for s in sets}, "tokens": tokens}
    if profile:
        report["profile"] = {n: profile_batch(embedder, workloads["chunks"][:32], n) for n in threads}
        for n, p in report["profile"].items():
            print(f"profile, 32 chunks, {n} thread(s): " + ", ".join(f"{k} {v:.3g}" for k, v in p.items()))
    with tempfile.TemporaryDirectory(prefix="rag-bench-embed-") as tmp:
        chosen = torch_variants(embedder, variants)
        ort, why = ort_variants(embedder, variants, Path(tmp))
        if why:
            print(f"ONNX Runtime variants skipped: {why}")
        chosen += ort
        agree = agreement(chosen, sets, max(threads), 32)
        for name, a in agree.items():
            print(f"{name:<10} cosine to st-fp32 min {a['cos_min']:.5f} mean {a['cos_mean']:.6f}, "
                  f"top-10 overlap {a['top10_overlap']:.3f}")
        cells = time_grid(chosen, workloads, threads, batches, rounds)
    print(f"tokens: {tokens} (real tokens, padding excluded); median of {rounds} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("\n".join(_fmt_table(cells, tokens, counts)))
    report.update(agreement=agree, cells=[c.__dict__ for c in cells])
    return report


def _ints(value: str) -> tuple[int, ...]:
    return tuple(int(x) for x in value.split(",") if x.strip())


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=_ints, default=(1, 2))
    p.add_argument("--batches", type=_ints, default=(8, 16, 32, 64))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--chunks", type=int, default=32, help="chunks per language")
    p.add_argument("--sentences", type=int, default=64, help="short sentences per language")
    p.add_argument("--no-profile", action="store_true")
    a = p.parse_args()
    main(threads=a.threads, batches=a.batches, rounds=a.rounds, variants=tuple(a.variants.split(",")),
         chunks=a.chunks, sentences=a.sentences, profile=not a.no_profile)
