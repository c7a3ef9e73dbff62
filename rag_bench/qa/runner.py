"""`rag bench qa`, the run: question sets, ingestion on both sides, every configuration over the questions.

`run` returns the data the report (`rag_bench.qa.report`) is written from.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rag.ask.events import EvidenceDecision, Expansion, Fused, ModelCallEvent, RewriteDecision, matches
from rag_bench.qa.configs import CONTEXT_TOP, EQUAL_CHARS, K, LI_TOP, LLAMA_ANSWER, LOOP, RETRIEVAL, VARIANTS
from rag_bench.sampling import even_sample, spread_order
from rag_bench.eval import faq
from rag_bench.eval.metrics import covered, first_hit_rank, hit_within_chars, mean, rouge_l, token_f1
from rag.settings import PROJECT_ROOT, Settings

_CITE_MARK = re.compile(r"\s*\[\d+(?:\s*[,，]\s*\d+)*\]")  # our inline citation markers, not scored as answer text


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
    factoid: int = 0  # questions per language of the factoid set (rag_bench.factoid) to add to the report; 0: off

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

    for d in docs:
        rt.collections.create(d.collection)
        name = f"debian-faq.{d.lang}.{d.variant}.txt"
        data = d.raw.encode("utf-8")
        t0 = time.monotonic()
        (job,) = rt.ingest.submit(d.collection, [Upload(name, data)])
        out = rt.ingest.run_job(job.id)
        d.ingest_s = time.monotonic() - t0
        if out is None:
            raise RuntimeError(f"{name}: {rt.ingest.get_job(job.id).error_message}")
        d.document_id = out.added.document.id
        d.chunk_count = out.chunks
        d.parsed = parse_document(data, name, settings).text
        d.chunks = {c.id: (c.document_id, c.char_start, c.char_end) for c in rt.collections.list_chunks(d.collection, d.document_id)}
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
    first = next((e for e in events if matches(e, EvidenceDecision)), None)
    rewrote = any(matches(e, RewriteDecision, verdict="rewrite") for e in events)
    expanded = any(matches(e, Expansion, added=True) for e in events)
    if result.get("abstained"):
        paths.append("abstain")
    if result.get("stopped_by"):
        paths.append("budget stop")
    if rewrote:
        paths.append("rewrite")
    if expanded:
        paths.append("expansion")
    if first and matches(first, EvidenceDecision, verdict="sufficient") and not rewrote and not result.get("abstained"):
        paths.append("sufficient→answer")
    return paths


def run_loop(rt, qs: QSet, doc: Doc, items: list[faq.QAItem], config: str, timer: _Timer) -> list[dict]:
    from rag.service.answering import AskRequest

    out = []
    chunk_map = doc.chunks
    for item in items:
        span = doc.gold_ours.get(item.number)
        timer.seconds = 0.0
        t0 = time.monotonic()
        result = rt.questions.ask(AskRequest(doc.collection, item.question, None, dict(LOOP[config]))).to_dict()
        wall = time.monotonic() - t0
        trace = rt.questions.trace(result["id"])
        events = trace.get("events", [])
        fused = [e for e in events if matches(e, Fused)]
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
            if matches(e, ModelCallEvent):
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
    from rag_bench.eval.llama import node_range

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
    from rag_bench.eval.llama import node_range

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
    orders = {qs.name: spread_order(qs.items, (j * golden) % 1.0)[: opts.answer_n] for j, qs in enumerate(answer_sets)}
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
    from rag.service.runtime import Runtime

    if opts.llama:
        from rag_bench.eval import llama

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
                items = even_sample(qs.items, opts.limit)
                records += run_retrieval(rt, qs, docs[(qs.dlang, qs.variant)], items)
            log(f"retrieval configs done ({len(records)} rows)")
            answer_sets = [qs for qs in sets if qs.variant == "noheadings" and (not opts.quick or qs.qlang == qs.dlang)]
            li_ingest, lb = {}, None
            if opts.llama:
                from rag_bench.eval.llama import LlamaBaseline

                from rag.ask import AskOptions

                options = AskOptions.from_settings(s)
                lb = LlamaBaseline(rt.generator, rt.embedder, context_window=options.context_window,
                                   max_new_tokens=options.max_answer_tokens)
                for d in docs.values():
                    lb.build(d.collection, d.raw)
                    li_ingest[d.collection] = lb.ingest_seconds[d.collection]
                    log(f"  llamaindex: {d.collection}: {len(lb.nodes(d.collection))} nodes in {li_ingest[d.collection]:.1f} s")
                for qs in sets:
                    records += run_li_retrieval(lb, qs, docs[(qs.dlang, qs.variant)], even_sample(qs.items, opts.limit))
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
    from rag_bench.factoid.runner import qa_summary

    log(f"factoid set: {opts.factoid} questions per language")
    return qa_summary(rt, settings, opts.factoid, log=log)
