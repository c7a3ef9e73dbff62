"""`rag bench qa`: answer quality and cost on the Debian FAQ, against LlamaIndex, in the same run.

Data (`rag.eval.faq`): the English and Simplified Chinese Debian FAQ, read from the installed packages
(`debian-faq`, `debian-faq-zh-cn`). Each numbered entry's heading is a question, its body the gold answer.
Every FAQ is indexed twice: with the headings removed (a question must match its answer's content) and
as shipped. Question sets: English questions on the English FAQ (`en>en`), Chinese on Chinese (`zh>zh`),
and cross-lingual (`en>zh`, `zh>en`, entries paired by number).

Gold spans are character offsets of the entry body in the ingested document's text (and, for
LlamaIndex, in the text it indexed); a chunk or node hits gold when its [start, end) overlaps the span.

Configurations (ours): `dense`, `bm25`, `hybrid` (retrieval only, every question of every set);
`hybrid+expand` (the asking loop with rewriting off: one answer call over hybrid retrieval with neighbour
expansion), `loop` (the full loop, default budget), `loop-force-rewrite` (one rewrite round every time).
LlamaIndex (`rag.eval.llama`, the optional `bench` extra): `li-vector` (retrieval only, top-10),
`llamaindex` (its default query engine: top-2, compact), `li-fusion` (`QueryFusionRetriever`, vector +
BM25, 3 generated queries). Model-calling configurations answer the same questions of the
headings-removed sets, round-robin within the run's wall-clock target (see `run_answering`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rag.eval import faq
from rag.eval.metrics import covered, first_hit_rank, hit_within_chars, mean, percentile, rouge_l, token_f1
from rag.settings import PROJECT_ROOT, Settings

RETRIEVAL = ("dense", "bm25", "hybrid")
LOOP = {
    "hybrid+expand": {"rewrite": False, "expand": True},
    "loop": {},
    "loop-force-rewrite": {"force_rewrite": True},
}
LLAMA_RETRIEVAL = ("li-vector",)
LLAMA_ANSWER = ("llamaindex", "li-fusion")
ALL_CONFIGS = RETRIEVAL + tuple(LOOP) + LLAMA_RETRIEVAL + LLAMA_ANSWER
ANSWERING = tuple(LOOP) + LLAMA_ANSWER
K = 10
CONTEXT_TOP = 5  # retrieval-only configs: context recall of the top chunks the loop would take (max_passages)
LI_TOP = 2  # LlamaIndex's default similarity_top_k: what its query engine packs
VARIANTS = ("noheadings", "shipped")
_CITE_MARK = re.compile(r"\s*\[\d+(?:\s*[,，]\s*\d+)*\]")  # our inline citation markers, not scored as answer text
EQUAL_CHARS = 4000  # recall at equal reading volume: about one LlamaIndex node of English text
RATE_KEYS = ("r1", "r5", "r10", "mrr", "r_chars", "ctx_recall", "f1", "rouge_l", "cite_precision", "abstained")


class MissingExtra(RuntimeError):
    """The optional `bench` extra (LlamaIndex, matplotlib) is not installed."""


@dataclass
class Options:
    langs: tuple[str, ...] = ("en", "zh")
    limit: int | None = None  # questions per set for retrieval configs (None: all)
    # Model-calling configs answer questions round-robin (one question of one headings-removed set, in every
    # model-calling config, ours and LlamaIndex's) until `answer_n` per set or the wall-clock target.
    answer_n: int = 8  # at most, per headings-removed set
    minutes: float | None = 30.0  # the whole run's target; None: always `answer_n`
    cross: bool = True
    llama: bool = True
    out_dir: Path = PROJECT_ROOT / "bench-reports"
    quick: bool = False
    variants: tuple[str, ...] = VARIANTS
    factoid: int = 0  # questions per language of the factoid set (rag.bench.factoid) to add to the report; 0: off

    @classmethod
    def preset(cls, *, quick: bool, lang: str, limit: int | None = None, answer_n: int | None = None,
               minutes: float | None = None, out_dir: Path | None = None) -> "Options":
        langs = ("en", "zh") if lang == "all" else (lang,)
        o = cls(langs=langs, cross=(lang == "all"), quick=quick)
        if quick:  # a smoke run: headings removed only, few questions, answers on same-language sets (~5 min)
            o.limit, o.answer_n, o.variants, o.minutes = 12, 1, ("noheadings",), 5.0
        if limit is not None:
            o.limit = limit
        if answer_n is not None:
            o.answer_n = answer_n
        if minutes is not None:
            o.minutes = minutes if minutes > 0 else None
        if out_dir is not None:
            o.out_dir = out_dir
        return o


@dataclass
class QSet:
    name: str  # e.g. "en>zh/noheadings"
    qlang: str
    dlang: str
    variant: str
    items: list[faq.QAItem]

    @property
    def pair(self) -> str:
        return f"{self.qlang}>{self.dlang}"


@dataclass
class Doc:
    lang: str
    variant: str
    raw: str  # the text given to both systems
    collection: str
    document_id: int = 0
    parsed: str = ""  # our pipeline's document text (chunk offsets refer to it)
    gold_ours: dict = field(default_factory=dict)  # number -> (start, end) in parsed
    gold_raw: dict = field(default_factory=dict)  # number -> (start, end) in raw (LlamaIndex offsets)
    chunks: dict = field(default_factory=dict)  # chunk id -> (document id, start, end)
    ingest_s: float = 0.0
    chunk_count: int = 0


def _sample(items: list, n: int | None) -> list:
    if n is None or n >= len(items):
        return list(items)
    if n <= 0:
        return []
    step = len(items) / n
    return [items[int((i + 0.5) * step)] for i in range(n)]  # evenly spread, centred (not always entry 1.1)


def _spread_order(items: list, phase: float = 0.0) -> list:
    """All items in an order whose every prefix is spread evenly over the list (van der Corput positions,
    shifted by `phase`): a run that stops early still answers questions from every part of the FAQ, and
    sets given different phases ask about different entries."""
    n, seen, out, i = len(items), set(), [], 1
    while len(out) < n:
        x, f, k = 0.0, 0.5, i
        while k:
            x, f, k = x + f * (k & 1), f / 2, k >> 1
        j = min(n - 1, int(((x + phase) % 1.0) * n))
        if j not in seen:
            seen.add(j)
            out.append(items[j])
        i += 1
        if i > 64 * n:  # positions exhausted by rounding: the rest in list order
            out += [it for j, it in enumerate(items) if j not in seen]
            break
    return out


def build_sets(faqs: dict[str, faq.Faq], opts: Options) -> list[QSet]:
    pairs = [(l, l) for l in opts.langs]
    if opts.cross and {"en", "zh"} <= set(faqs):
        pairs += [("en", "zh"), ("zh", "en")]
    out = []
    for q, d in pairs:
        items = faq.qa_items(faqs[q], faqs[d])
        for v in opts.variants:
            out.append(QSet(f"{q}>{d}/{v}", q, d, v, items))
    return out


# ---------------------------------------------------------------- our side

class _Timer:
    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*a, **kw):
            t0 = time.monotonic()
            try:
                return fn(*a, **kw)
            finally:
                self.seconds += time.monotonic() - t0
        return timed


def _ingest(rt, docs: list[Doc], settings: Settings, log) -> None:
    from ingest.parsers import parse_document
    from ingest.uploads import Upload
    from rag.store import repository as repo

    conn = rt.db.get()
    for d in docs:
        repo.create_collection(conn, d.collection)
        name = f"debian-faq.{d.lang}.{d.variant}.txt"
        data = d.raw.encode("utf-8")
        t0 = time.monotonic()
        (job,) = rt.ingest.submit(d.collection, [Upload(name, data)])
        out = rt.ingest.run_job(job.id)
        d.ingest_s = time.monotonic() - t0
        if out is None:
            raise RuntimeError(f"{name}: {repo.get_job(conn, job.id).error_message}")
        d.document_id = out.added.document.id
        d.chunk_count = out.chunks
        d.parsed = parse_document(data, name, settings).text
        d.chunks = {c.id: (c.document_id, c.char_start, c.char_end) for c in repo.list_chunks(conn, d.document_id)}
        log(f"  ours: {d.collection}: {out.chunks} chunks in {d.ingest_s:.1f} s")


def _retrieval_record(config, qs, item, ranked, gold, ctx_ranges, seconds) -> dict:
    rank = first_hit_rank(ranked, gold[0], gold[1]) if gold else None
    return {
        "config": config, "set": qs.name, "pair": qs.pair, "variant": qs.variant, "number": item.number,
        "r1": float(rank is not None and rank <= 1), "r5": float(rank is not None and rank <= 5),
        "r10": float(rank is not None and rank <= 10), "mrr": (1.0 / rank) if rank else 0.0,
        "r_chars": float(bool(gold) and hit_within_chars(ranked, gold[0], gold[1], EQUAL_CHARS)),
        "ctx_recall": covered(gold[1], [(s, e) for d, s, e in ctx_ranges if d == gold[0]]) if gold else 0.0,
        "seconds": seconds, "stages": {"retrieve": seconds}, "model_calls": 0, "prompt_tokens": 0,
        "completion_tokens": 0,
    }


def run_retrieval(rt, qs: QSet, doc: Doc, items: list[faq.QAItem]) -> list[dict]:
    out = []
    for item in items:
        span = doc.gold_ours.get(item.number)
        gold = (doc.document_id, span) if span else None
        for config in RETRIEVAL:
            t0 = time.monotonic()
            hits = rt.searcher.hits(doc.collection, item.question, K, dense=config != "bm25", lexical=config != "dense")
            res = rt.searcher.hydrate(hits)
            secs = time.monotonic() - t0
            ranked = [(r.document_id, r.char_start, r.char_end) for r in res]
            out.append(_retrieval_record(config, qs, item, ranked, gold, ranked[:CONTEXT_TOP], secs))
    return out


def _decision_path(result: dict, events: list[dict]) -> list[str]:
    paths = []
    ev = [e for e in events if e.get("type") == "decision"]
    first = next((e for e in ev if e.get("step") == "evidence"), None)
    rewrote = any(e.get("step") == "rewrite" and e.get("verdict") == "rewrite" for e in ev)
    expanded = any(e.get("type") == "expansion" and e.get("added") for e in events)
    if result.get("abstained"):
        paths.append("abstain")
    if result.get("stopped_by"):
        paths.append("budget stop")
    if rewrote:
        paths.append("rewrite")
    if expanded:
        paths.append("expansion")
    if first and first.get("verdict") == "sufficient" and not rewrote and not result.get("abstained"):
        paths.append("sufficient→answer")
    return paths


def run_loop(rt, qs: QSet, doc: Doc, items: list[faq.QAItem], config: str, timer: _Timer) -> list[dict]:
    from rag.answering import AskRequest

    out = []
    chunk_map = doc.chunks
    for item in items:
        span = doc.gold_ours.get(item.number)
        timer.seconds = 0.0
        t0 = time.monotonic()
        result = rt.questions.ask(AskRequest(doc.collection, item.question, None, dict(LOOP[config])))
        wall = time.monotonic() - t0
        trace = rt.questions.trace(result["id"])
        events = trace.get("events", [])
        fused = [e for e in events if e.get("type") == "fused"]
        ranked = [chunk_map[c["chunk_id"]] for c in (fused[-1]["candidates"] if fused else []) if c["chunk_id"] in chunk_map]
        ctx = []
        for p in trace.get("context", []):
            for cid in list(p.get("chunk_ids", [])) + list(p.get("neighbour_ids", [])):
                if cid in chunk_map:
                    d, s, e = chunk_map[cid]
                    ctx.append((d, max(s, p.get("char_start", s)), min(e, p.get("char_end", e))))
        gold = (doc.document_id, span) if span else None
        rec = _retrieval_record(config, qs, item, ranked, gold, ctx, wall)
        usage = result.get("usage", {})
        by = usage.get("by_purpose", {})
        stages = {"retrieve": timer.seconds}
        for e in events:
            if e.get("type") == "model_call":
                key = "answer" if e.get("purpose") == "answer" else "rewrite"
                stages[key] = stages.get(key, 0.0) + float(e.get("wall_ms", 0.0)) / 1000.0
        stages["other"] = max(0.0, wall - sum(stages.values()))
        cits = result.get("citations") or []
        good = sum(1 for c in cits if gold and any(
            cid in chunk_map and chunk_map[cid][0] == gold[0] and chunk_map[cid][1] < span[1] and span[0] < chunk_map[cid][2]
            for cid in c.get("chunk_ids", [])))
        answer = "" if result.get("abstained") else _CITE_MARK.sub("", result.get("answer", ""))
        rec.update({
            "f1": token_f1(answer, item.gold_answer, qs.qlang),
            "rouge_l": rouge_l(answer, item.gold_answer, qs.qlang),
            "cite_precision": good / len(cits) if cits else None,
            "abstained": float(bool(result.get("abstained"))),
            "model_calls": usage.get("model_calls", 0), "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0), "stages": stages,
            "paths": _decision_path(result, events), "answer": answer, "question": item.question,
            "stopped_by": result.get("stopped_by"),
            "by_purpose": by,
        })
        out.append(rec)
    return out


# ---------------------------------------------------------------- LlamaIndex side

def run_li_retrieval(lb, qs: QSet, doc: Doc, items: list[faq.QAItem]) -> list[dict]:
    from rag.eval.llama import node_range

    name = doc.collection
    retriever = lb.retriever(name, K)
    out = []
    for item in items:
        span = doc.gold_raw.get(item.number)
        gold = (name, span) if span else None
        t0 = time.monotonic()
        nodes = retriever.retrieve(item.question)
        secs = time.monotonic() - t0
        ranked = [node_range(n) for n in nodes]
        out.append(_retrieval_record("li-vector", qs, item, ranked, gold, ranked[:LI_TOP], secs))
    return out


def run_li_answer(lb, qs: QSet, doc: Doc, items: list[faq.QAItem], config: str) -> list[dict]:
    from llama_index.core import QueryBundle

    from rag.ask.post import is_abstention
    from rag.eval.llama import node_range

    name = doc.collection
    engine = lb.query_engine(name) if config == "llamaindex" else lb.fusion_engine(name)
    out = []
    for item in items:
        span = doc.gold_raw.get(item.number)
        gold = (name, span) if span else None
        mark = lb.log.mark()
        t0 = time.monotonic()
        nodes = engine.retrieve(QueryBundle(item.question))
        t1 = time.monotonic()
        response = engine.synthesize(QueryBundle(item.question), nodes)
        wall = time.monotonic() - t0
        calls = lb.log.since(mark)
        gen_s = sum(c["seconds"] for c in calls if c["purpose"] == "complete")  # query generation (fusion)
        ranked = [node_range(n) for n in response.source_nodes]
        rec = _retrieval_record(config, qs, item, ranked, gold, ranked, wall)
        answer = str(response.response or "")
        lang = qs.qlang
        rec.update({
            "f1": token_f1(answer, item.gold_answer, lang), "rouge_l": rouge_l(answer, item.gold_answer, lang),
            "cite_precision": None, "abstained": float(not answer.strip() or answer.strip() == "Empty Response"
                                                       or is_abstention(answer)),
            "model_calls": len(calls), "prompt_tokens": sum(c["prompt_tokens"] for c in calls),
            "completion_tokens": sum(c["completion_tokens"] for c in calls),
            "stages": {"retrieve": max(0.0, (t1 - t0) - gen_s), "rewrite": gen_s, "answer": wall - (t1 - t0)},
            "answer": answer, "question": item.question,
        })
        out.append(rec)
    return out


# ---------------------------------------------------------------- the run

def _machine() -> dict:
    import importlib.metadata as md

    vers = {}
    for dist in ("torch", "transformers", "sentence-transformers", "faiss-cpu", "llama-index-core",
                 "llama-index-vector-stores-faiss", "llama-index-retrievers-bm25", "matplotlib"):
        try:
            vers[dist] = md.version(dist)
        except md.PackageNotFoundError:
            vers[dist] = "missing"
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load": os.getloadavg(), "versions": vers}


def run_answering(rt, lb, answer_sets: list[QSet], docs: dict, opts: Options, timer: "_Timer", records: list[dict],
                  deadline: float | None, log) -> dict[str, int]:
    """Model-calling configs, one question at a time: each question of each set goes through every
    model-calling config (ours and LlamaIndex's) before the next, so all configs answer the same questions
    however early the run stops. The sets ask about different FAQ entries (the cross-lingual sets pair
    the same entries, so without this a short run would see few distinct ones). A question starts only if the mean time of one so far still fits before
    the deadline; the first question of every set always runs. Returns questions answered per set."""
    configs = list(LOOP) + (list(LLAMA_ANSWER) if lb is not None else [])
    golden = 0.6180339887  # phases far apart for any number of sets: each set asks about other entries
    orders = {qs.name: _spread_order(qs.items, (j * golden) % 1.0)[: opts.answer_n] for j, qs in enumerate(answer_sets)}
    answered = {qs.name: 0 for qs in answer_sets}
    spent: list[float] = []
    for r in range(opts.answer_n):
        for qs in answer_sets:
            if r >= len(orders[qs.name]):
                continue
            if r > 0 and deadline is not None and spent and time.monotonic() + mean(spent) > deadline:
                log(f"wall-clock target reached: {sum(answered.values())} questions answered in every config")
                return answered
            item, doc = orders[qs.name][r], docs[(qs.dlang, qs.variant)]
            t0 = time.monotonic()
            for config in configs:
                if config in LOOP:
                    records += run_loop(rt, qs, doc, [item], config, timer)
                else:
                    records += run_li_answer(lb, qs, doc, [item], config)
            spent.append(time.monotonic() - t0)
            answered[qs.name] += 1
        log(f"answering round {r + 1} done ({sum(answered.values())} questions, mean {mean(spent):.0f} s each)")
    return answered


def run(settings: Settings, opts: Options, log=print) -> dict:
    """Runs everything; returns the data the report is written from (see `write_report`)."""
    from rag.runtime import Runtime

    if opts.llama:
        from rag.eval import llama

        ok, why = llama.available()
        if not ok:
            raise MissingExtra(why)
    need = sorted(set(opts.langs) | ({"en", "zh"} if opts.cross else set()))
    missing = faq.missing_packages(need)
    if missing:
        raise faq.MissingPackage(next(l for l in need if faq.PACKAGES[l] in missing))
    t_start = time.monotonic()
    machine = _machine()
    faqs = {l: faq.load(l) for l in need}
    sets = build_sets(faqs, opts)
    doc_langs = sorted({s.dlang for s in sets})
    docs = {(l, v): Doc(l, v, faqs[l].noheadings if v == "noheadings" else faqs[l].shipped, f"faq-{l}-{v}")
            for l in doc_langs for v in opts.variants}
    for d in docs.values():
        d.gold_raw = faq.gold_spans(d.raw, faqs[d.lang].entries)

    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="rag-bench-qa-") as tmp:
        s = settings.model_copy(update={"data_dir": Path(tmp), "model_cache_dir": settings.models_dir,
                                        "load_generator": True})
        rt = Runtime(s)
        t0 = time.monotonic()
        rt.start(worker=False)
        load_s = time.monotonic() - t0
        gen_mode = rt.generator.mode
        log(f"models loaded in {load_s:.1f} s; ingesting {len(docs)} documents")
        try:
            _ingest(rt, list(docs.values()), s, log)
            for d in docs.values():
                d.gold_ours = faq.gold_spans(d.parsed, faqs[d.lang].entries)
            timer = _Timer()
            rt.searcher.hits = timer.wrap(rt.searcher.hits)
            rt.searcher.hydrate = timer.wrap(rt.searcher.hydrate)
            for qs in sets:
                items = _sample(qs.items, opts.limit)
                records += run_retrieval(rt, qs, docs[(qs.dlang, qs.variant)], items)
            log(f"retrieval configs done ({len(records)} rows)")
            answer_sets = [qs for qs in sets if qs.variant == "noheadings" and (not opts.quick or qs.qlang == qs.dlang)]
            li_ingest, lb = {}, None
            if opts.llama:
                from rag.eval.llama import LlamaBaseline

                from rag.ask import AskOptions

                options = AskOptions.from_settings(s)
                lb = LlamaBaseline(rt.generator, rt.embedder, context_window=options.context_window,
                                   max_new_tokens=options.max_answer_tokens)
                for d in docs.values():
                    lb.build(d.collection, d.raw)
                    li_ingest[d.collection] = lb.ingest_seconds[d.collection]
                    log(f"  llamaindex: {d.collection}: {len(lb.nodes(d.collection))} nodes in {li_ingest[d.collection]:.1f} s")
                for qs in sets:
                    records += run_li_retrieval(lb, qs, docs[(qs.dlang, qs.variant)], _sample(qs.items, opts.limit))
                log("li-vector done")
            deadline = None if opts.minutes is None else t_start + opts.minutes * 60
            answered = run_answering(rt, lb, answer_sets, docs, opts, timer, records, deadline, log)
            factoid_summary = _factoid(rt, s, opts, log)
        finally:
            rt.close()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "options": {"langs": list(opts.langs), "limit": opts.limit, "answer_n": opts.answer_n, "cross": opts.cross,
                    "quick": opts.quick, "llama": opts.llama, "variants": list(opts.variants),
                    "minutes": opts.minutes},
        "answered": answered,
        "machine": machine, "load_end": os.getloadavg(), "total_s": time.monotonic() - t_start, "model_load_s": load_s,
        "models": {"generator": s.generator, "generator_mode": gen_mode, "embedder": s.embedder,
                   "context_window": s.context_window, "max_answer_tokens": s.max_answer_tokens},
        "faq": {l: {"package": faq.PACKAGES[l], "version": faq.package_version(l), "entries": len(faqs[l].entries),
                    "questions": sum(1 for e in faqs[l].entries if e.is_question)} for l in faqs},
        "sets": {qs.name: len(qs.items) for qs in sets},
        "docs": {d.collection: {"chunks": d.chunk_count, "ingest_s": d.ingest_s, "gold_ours": len(d.gold_ours),
                                "gold_raw": len(d.gold_raw), "li_ingest_s": li_ingest.get(d.collection),
                                "chars": len(d.raw)} for d in docs.values()},
        "records": records,
        "factoid": factoid_summary,
    }


def _factoid(rt, settings: Settings, opts: Options, log) -> dict | None:
    """The factoid set's summary with the same loaded models (`--factoid N`: N questions per language)."""
    if not opts.factoid:
        return None
    from rag.bench.factoid import qa_summary

    log(f"factoid set: {opts.factoid} questions per language")
    return qa_summary(rt, settings, opts.factoid, log=log)


# ---------------------------------------------------------------- aggregation and report

def summarize(records: list[dict], *, config: str, variant: str | None = "noheadings", pair: str | None = None) -> dict:
    rows = [r for r in records if r["config"] == config and (variant is None or r["variant"] == variant)
            and (pair is None or r["pair"] == pair)]
    if not rows:
        return {}
    out = {"n": len(rows)}
    for k in RATE_KEYS:
        vals = [r.get(k) for r in rows if r.get(k) is not None]
        out[k] = mean(vals) if vals else None
    for k in ("model_calls", "prompt_tokens", "completion_tokens"):
        out[k] = mean([r.get(k, 0) for r in rows])
    secs = [r["seconds"] for r in rows]
    out["s_p50"], out["s_p90"] = percentile(secs, 0.5), percentile(secs, 0.9)
    stages: dict[str, float] = defaultdict(float)
    for r in rows:
        for k, v in (r.get("stages") or {}).items():
            stages[k] += v / len(rows)
    out["stages"] = dict(stages)
    paths = Counter(p for r in rows for p in r.get("paths", []))
    out["paths"] = {p: paths[p] / len(rows) for p in paths}
    return out


def _f(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


MAIN_COLS = [("n", "n"), ("r1", "R@1"), ("r5", "R@5"), ("r10", "R@10"), ("mrr", "MRR"),
             ("r_chars", f"R@{EQUAL_CHARS // 1000}k chars"), ("ctx_recall", "ctx recall"),
             ("f1", "F1"), ("rouge_l", "ROUGE-L"), ("cite_precision", "cite prec"), ("abstained", "abstain"),
             ("model_calls", "calls/q"), ("prompt_tokens", "prompt tok/q"), ("completion_tokens", "compl tok/q"),
             ("s_p50", "s/q p50"), ("s_p90", "s/q p90")]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def main_table(data: dict, variant: str = "noheadings") -> list[str]:
    rows = []
    for c in ALL_CONFIGS:
        s = summarize(data["records"], config=c, variant=variant)
        if not s:
            continue
        cells = [c]
        for k, _ in MAIN_COLS:
            v = s.get(k)
            if c in RETRIEVAL + LLAMA_RETRIEVAL and k in ("f1", "rouge_l", "cite_precision", "abstained"):
                v = None
            cells.append(_f(v, digits=0 if k in ("prompt_tokens", "completion_tokens") else 2))
        rows.append(cells)
    return _table(["config"] + [h for _, h in MAIN_COLS], rows)


def _per_set_table(recs: list[dict], configs, key: str, pairs: list[str], variants: list[str]) -> list[str]:
    rows = []
    for c in configs:
        cells = [c]
        for p in pairs:
            for v in variants:
                s = summarize(recs, config=c, variant=v, pair=p)
                cells.append(f"{_f(s.get(key))} (n={s['n']})" if s else "—")
        rows.append(cells)
    return _table(["config"] + [f"{p} {v}" for p in pairs for v in variants], rows)


def _abstention_split(recs: list[dict]) -> list[str]:
    """Answer F1 split by whether our loop answered: refusing scores 0, so the pooled F1 mixes answer
    quality with how often each system declines; on the same questions the two can be told apart."""
    key = lambda r: (r["set"], r["number"])  # noqa: E731
    li = {key(r): r for r in recs if r["config"] == "llamaindex" and r["variant"] == "noheadings"}
    ours = [r for r in recs if r["config"] == "loop" and r["variant"] == "noheadings" and key(r) in li]
    if not ours:
        return []
    answered = [r for r in ours if not r["abstained"]]
    refused = [r for r in ours if r["abstained"]]
    line = (f"Answer F1 on the {len(answered)} of {len(ours)} questions our loop answered: ours "
            f"{_f(mean([r['f1'] for r in answered]))} vs LlamaIndex {_f(mean([li[key(r)]['f1'] for r in answered]))}")
    if refused:
        line += (f"; on the {len(refused)} it refused, LlamaIndex's F1 was "
                 f"{_f(mean([li[key(r)]['f1'] for r in refused]))} (ours 0 by definition)")
    return [line + ".", ""]


def _answered_text(data: dict) -> str:
    o = data["options"]
    target = f"the run's {o['minutes']:g}-minute target" if o.get("minutes") else "no time target"
    per_set = ", ".join(f"{k} {v}" for k, v in data["answered"].items())
    return (f"Model-calling configs answer the same questions, spread over each headings-removed set, one question "
            f"at a time through every such config, up to {o['answer_n']} per set or {target}: answered {per_set}"
            + (" (same-language sets only: --quick)." if o["quick"] else "."))


def _ratio(a, b) -> str:
    if a is None or b is None or (isinstance(a, float) and a != a) or (isinstance(b, float) and b != b) or b == 0:
        return "—"
    return f"{a / b:.2f}"


def write_report(data: dict, out_dir: Path) -> tuple[Path, list[Path]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    day = data["date"][:10]
    stem = f"qa-{day}" + ("-quick" if data["options"]["quick"] else "")
    recs = data["records"]
    L: list[str] = [f"# QA benchmark: Debian FAQ, ours vs LlamaIndex ({data['date']})", ""]
    m = data["machine"]
    L += [f"Machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}; load average at start "
          f"{', '.join(f'{x:.1f}' for x in m['load'])}, at end {', '.join(f'{x:.1f}' for x in data['load_end'])} "
          f"(timings are only comparable within this run). Versions: "
          + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
          f"Models: generator `{data['models']['generator']}` ({data['models']['generator_mode']}), embedder "
          f"`{data['models']['embedder']}`; context window {data['models']['context_window']} tokens, max answer "
          f"tokens {data['models']['max_answer_tokens']} on both sides. Run: {data['options']}; total "
          f"{data['total_s'] / 60:.1f} min (model load {data['model_load_s']:.0f} s).", ""]
    L += ["Data: " + "; ".join(f"`{v['package']}` {v['version']} ({v['entries']} entries, {v['questions']} headed by a "
                              f"question)" for v in data["faq"].values())
          + ". Question sets (questions available): " + ", ".join(f"{k} {v}" for k, v in data["sets"].items())
          + ". Retrieval-only configs use every question (or `limit` per set). " + _answered_text(data), ""]
    L += ["## Main table (headings removed, all question sets pooled)", ""]
    L += main_table(data, "noheadings") + [""]
    L += ["R@k/MRR: first chunk (ours) or node (LlamaIndex) overlapping the gold answer span, in the ranked list "
          "(loops: the final fused ranking; LlamaIndex answer configs: their source nodes). ctx recall: share of the "
          f"gold span's characters in the packed context (retrieval-only configs: top {CONTEXT_TOP} chunks, "
          f"li-vector: its default top {LI_TOP}). F1/ROUGE-L against the gold answer's first sentences (words; "
          "characters for Chinese), abstentions score 0. Seconds are wall time per question.", ""]
    if any(r["variant"] == "shipped" for r in recs):
        L += ["## As shipped (headings present)", ""] + main_table(data, "shipped") + [""]

    pairs = sorted({r["pair"] for r in recs})
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in recs)]
    L += ["## Recall@5 per question set", ""]
    L += _per_set_table(recs, RETRIEVAL + LLAMA_RETRIEVAL + ANSWERING, "r5", pairs, variants) + [""]
    L += [f"## Recall within {EQUAL_CHARS:,} characters of retrieved text, per question set", "",
          "The same rankings read until this many characters (the unit crossing the limit counts): ours and "
          "LlamaIndex's at equal reading volume, whatever the size of each system's units.", ""]
    L += _per_set_table(recs, RETRIEVAL + LLAMA_RETRIEVAL, "r_chars", pairs, variants) + [""]

    # ratios
    L += ["## Ours / LlamaIndex (headings removed)", ""]
    ours_r = summarize(recs, config="hybrid")
    li_r = summarize(recs, config="li-vector")
    rows = []
    ours_ing = sum(d["ingest_s"] for d in data["docs"].values())
    li_ing = sum(d["li_ingest_s"] or 0 for d in data["docs"].values()) or None
    for ours_c, li_c in (("loop", "llamaindex"), ("loop-force-rewrite", "li-fusion"), ("hybrid+expand", "llamaindex")):
        o, l = summarize(recs, config=ours_c), summarize(recs, config=li_c)
        if not o or not l:
            continue
        rows.append([f"{ours_c} / {li_c}", _ratio(ours_r.get("r5"), li_r.get("r5")) + " (hybrid / li-vector)",
                     _ratio(o.get("ctx_recall"), l.get("ctx_recall")), _ratio(o.get("f1"), l.get("f1")),
                     _ratio(o.get("model_calls"), l.get("model_calls")),
                     _ratio(o.get("prompt_tokens", 0) + o.get("completion_tokens", 0),
                            l.get("prompt_tokens", 0) + l.get("completion_tokens", 0)),
                     _ratio(o.get("prompt_tokens"), l.get("prompt_tokens")),
                     _ratio(o.get("s_p50"), l.get("s_p50")), _ratio(ours_ing, li_ing)])
    L += _table(["pair", "recall@5", "ctx recall", "answer F1", "model calls", "tokens/q", "prompt tok/q", "s/q p50",
                 "ingestion time"], rows) + [""]
    L += [f"Ingestion (all {len(data['docs'])} documents): ours {ours_ing:.1f} s, LlamaIndex "
          f"{_f(li_ing, digits=1)} s. Per document: " + "; ".join(
              f"{k}: {v['chunks']} chunks {v['ingest_s']:.1f} s vs LlamaIndex {_f(v['li_ingest_s'], digits=1)} s"
              for k, v in data["docs"].items()), ""]

    # goals
    L += ["## Goals", ""]
    goal_rows = []
    for p in pairs:
        o, l = summarize(recs, config="hybrid", pair=p), summarize(recs, config="li-vector", pair=p)
        if o and l and o.get("r5") is not None and l.get("r5") is not None:
            ok = o["r5"] >= l["r5"] + 0.10
            goal_rows.append([f"recall@5 ≥ LlamaIndex + 10 points ({p}, headings removed)",
                              f"{o['r5']:.2f} vs {l['r5']:.2f}", "met" if ok else "**not met**"])
    o, l = summarize(recs, config="loop"), summarize(recs, config="llamaindex")
    if o and l:
        ok = (o["f1"] or 0) > (l["f1"] or 0) and o["prompt_tokens"] <= 0.6 * l["prompt_tokens"]
        goal_rows.append(["answer F1 above LlamaIndex at ≤ 60% of its prompt tokens/q (loop vs llamaindex)",
                          f"F1 {_f(o['f1'])} vs {_f(l['f1'])}; prompt tokens {o['prompt_tokens']:.0f} vs "
                          f"{l['prompt_tokens']:.0f} ({_ratio(o['prompt_tokens'], l['prompt_tokens'])})",
                          "met" if ok else "**not met**"])
    if o:
        goal_rows.append(["mean model calls per question ≤ 1.5 (loop)", f"{o['model_calls']:.2f}",
                          "met" if o["model_calls"] <= 1.5 else "**not met**"])
    for p in pairs:
        o, l = summarize(recs, config="hybrid", pair=p), summarize(recs, config="li-vector", pair=p)
        if o and l and o.get("r_chars") is not None and l.get("r_chars") is not None:
            goal_rows.append([f"(context) recall within {EQUAL_CHARS:,} characters ({p}, headings removed)",
                              f"{o['r_chars']:.2f} vs {l['r_chars']:.2f}",
                              "above" if o["r_chars"] > l["r_chars"] else "not above"])
    L += _table(["goal", "measured", "status"], goal_rows) + [""]
    L += _abstention_split(recs)
    n_answered = sum(data["answered"].values())
    if n_answered < 40:
        L += [f"Model-calling configs ran on {n_answered} question(s) in all: their figures are indicative only.", ""]

    # decision paths
    L += ["## Loop decision paths (share of questions; a question can take several)", ""]
    names = ["sufficient→answer", "rewrite", "expansion", "abstain", "budget stop"]
    rows = []
    for c in LOOP:
        s = summarize(recs, config=c)
        if s:
            rows.append([c] + [_f(s["paths"].get(n, 0.0)) for n in names])
    L += _table(["config"] + names, rows) + [""]
    stops = Counter((r["config"], r.get("stopped_by")) for r in recs if r["config"] in LOOP and r.get("stopped_by"))
    if stops:
        L += ["Budget stops by budget: " + "; ".join(f"{c}: {b} ×{n}" for (c, b), n in sorted(stops.items()))
              + (" (`timeout_s` is the default 60 s per question: on a loaded machine the answer call can be cut)."
                 if any(b == "timeout_s" for _, b in stops) else "."), ""]

    # stages
    L += ["## Seconds per question by stage (mean, headings removed)", ""]
    stage_names = ["retrieve", "rewrite", "answer", "other"]
    rows = []
    for c in ALL_CONFIGS:
        s = summarize(recs, config=c)
        if s:
            rows.append([c] + [_f(s["stages"].get(n, 0.0)) for n in stage_names])
    L += _table(["config"] + stage_names, rows) + [""]

    L += ["## How to read this", "",
          "- Both systems index the same text (the FAQ as shipped, or with every heading line and the table of "
          "contents deleted) with the same embedder and generator. LlamaIndex runs through thin adapters over our "
          "`Generator` and `Embedder` (same weights, chat template, greedy decoding, `query: `/`passage: ` prompts, "
          "window and max new tokens); its splitter, index, retrievers, prompts and response synthesis are its own "
          "defaults. Its default 1024-token nodes are longer than the embedder's 512-token input: the tail of each "
          "node is never embedded (as with `HuggingFaceEmbedding` on this model).",
          "- R@k counts retrieval units: ours are chunks of at most 256 embedder tokens, LlamaIndex's nodes up to "
          "1024 generator tokens (see the chunk/node counts under Ingestion), so at equal k LlamaIndex's list covers "
          "about four times more text; context recall (characters of the gold span actually in the prompt) is the "
          "size-independent comparison.",
          "- Model-calling configurations run on the headings-removed sets only, on a small deterministic sample: "
          "compare their retrieval figures with the retrieval-only rows (every question) with that in mind.",
          "- Token F1 / ROUGE-L reward an answer that restates the question (common with this 0.5B generator, "
          "especially in Chinese) and punish a correct answer worded differently from the FAQ's first sentences; "
          "read them as a coarse signal. An abstention scores 0 (the gold answer always exists).",
          "- Our loop runs under the default budget, including `timeout_s` (60 s): on a loaded 2-core machine the "
          "answer call can be cut at the deadline (a `budget stop`). LlamaIndex has no deadline.",
          "- Cross-lingual F1 is scored against the gold answer in the question's language (the FAQs are translations).",
          ""]
    if data.get("factoid"):
        from rag.bench.factoid import qa_report_lines

        L += qa_report_lines(data["factoid"])
    charts = _charts(data, out_dir, stem)
    L += ["## Charts", ""] + [f"![{p.stem}]({p.name})" for p in charts] + [""]

    # sample answers
    L += ["## Sample answers", ""]
    seen = set()
    for r in recs:
        if r["config"] in ANSWERING and (r["set"], r["number"]) not in seen and len(seen) < 4:
            seen.add((r["set"], r["number"]))
            L.append(f"**{r['set']} {r['number']}: {r['question']}**")
            for r2 in recs:
                if r2["config"] in ANSWERING and r2["set"] == r["set"] and r2["number"] == r["number"]:
                    L.append(f"- {r2['config']} (F1 {r2['f1']:.2f}): {' '.join(r2['answer'].split())[:300]}")
            L.append("")
    path = out_dir / f"{stem}.md"
    path.write_text("\n".join(L), encoding="utf-8")
    (out_dir / f"{stem}.json").write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return path, charts


def _charts(data: dict, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = data["records"]
    out = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, metric, label in ((axes[0], "f1", "answer F1"), (axes[1], "r5", "recall@5")):
        for c in ALL_CONFIGS:
            s = summarize(recs, config=c)
            if not s or s.get(metric) is None or (metric == "f1" and c not in ANSWERING):
                continue
            x = s["prompt_tokens"] + s["completion_tokens"]
            ax.scatter([x], [s[metric]], marker="s" if c.startswith("li") or c == "llamaindex" else "o", s=60)
            ax.annotate(c, (x, s[metric]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel("model tokens per question (prompt + completion)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} against cost (headings removed)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    p = out_dir / f"{stem}-quality-cost.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    out.append(p)

    fig, ax = plt.subplots(figsize=(10, 5))
    stage_names = ["retrieve", "rewrite", "answer", "other"]
    configs = [c for c in ALL_CONFIGS if summarize(recs, config=c)]
    bottom = [0.0] * len(configs)
    for st in stage_names:
        vals = [summarize(recs, config=c)["stages"].get(st, 0.0) for c in configs]
        ax.bar(configs, vals, bottom=bottom, label=st)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("seconds per question (mean)")
    ax.set_title("Seconds per question by stage (headings removed)")
    ax.legend()
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    p = out_dir / f"{stem}-stages.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    out.append(p)
    return out


def stdout_table(data: dict) -> str:
    return "\n".join(["headings removed, all sets pooled:"] + main_table(data, "noheadings"))
