"""`rag bench factoid`, the run: select the questions, ingest the documents they need, ask, summarise.

`run` returns the data the report (`rag_bench.factoid.report`) is written from; `qa_summary` is the same
for the factoid section of `rag bench qa --factoid N`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rag.models.cpu import read_cpu
from rag_bench.sampling import spread_order
from rag_bench.eval import factoid
from rag_bench.eval.metrics import mean, percentile
from rag.settings import PROJECT_ROOT, Settings


@dataclass
class Options:
    langs: tuple[str, ...] = factoid.LANGS
    limit: int | None = None  # questions per language (None: all)
    minutes: float | None = None  # wall-clock target for the whole run; None: every selected question
    data_dir: Path | None = None  # persistent state (reused across runs); None: a temporary folder
    out_dir: Path = PROJECT_ROOT / "bench-reports"
    budget: dict | None = None  # the ask budget (None: the service default)


def select(items: list[factoid.Item], limit: int | None, langs) -> list[factoid.Item]:
    """The questions to ask, interleaved across languages (so a run cut short by its time target stays
    balanced). With `limit`, each language gets `limit` questions spread over the whole set (documents
    and chapters), unanswerable ones in proportion (at least one when `limit` >= 2)."""
    per_lang: list[list[factoid.Item]] = []
    for lang in langs:
        ans = [i for i in items if i.lang == lang and i.answerable]
        una = [i for i in items if i.lang == lang and not i.answerable]
        if limit is None:
            n_u = len(una)
        else:
            n_u = min(len(una), max(1 if limit >= 2 else 0, round(limit * len(una) / max(1, len(ans) + len(una)))))
        n_a = len(ans) if limit is None else min(len(ans), limit - n_u)
        a_order, u_order = spread_order(ans)[:n_a], spread_order(una)[:n_u]
        mixed: list[factoid.Item] = []
        step = (len(a_order) + 1) / (len(u_order) + 1) if u_order else 0
        ui = 0
        for k, it in enumerate(a_order):  # unanswerable items spread among the answerable ones
            while ui < len(u_order) and k >= (ui + 1) * step - 1:
                mixed.append(u_order[ui])
                ui += 1
            mixed.append(it)
        mixed += u_order[ui:]
        per_lang.append(mixed)
    out = []
    for r in range(max((len(x) for x in per_lang), default=0)):
        out += [x[r] for x in per_lang if r < len(x)]
    return out


def collection_name(doc: str) -> str:
    return f"factoid-{doc}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def ingest_documents(rt, documents: dict[str, tuple[str, bytes]], embedder: str, log) -> dict[str, dict]:
    """Each document into its own collection, unless that collection already holds these bytes.
    `documents`: doc key -> (upload name, bytes). Returns per document: ingested (bool), seconds, chunks."""
    from ingest.uploads import Upload
    from rag import store
    from rag.errors import RagError

    conn = rt.db.get()
    out = {}
    for doc, (name, data) in documents.items():
        coll = collection_name(doc)
        try:
            c = store.get_collection(conn, coll)
            if c.description and c.description != f"embedder={embedder}":
                raise RuntimeError(f"collection {coll!r} was built with {c.description}, not embedder={embedder}: "
                                   "use another --data-dir")
        except RagError:
            store.create_collection(conn, coll, f"embedder={embedder}")
        existing = store.find_document_by_sha(conn, coll, hashlib.sha256(data).hexdigest())
        if existing is not None:  # the same bytes are stored once per collection
            out[doc] = {"ingested": False, "seconds": 0.0, "chunks": existing.chunk_count, "chars": len(data)}
            log(f"  {coll}: already holds {name} ({existing.chunk_count} chunks), not ingested again")
            continue
        t0 = time.monotonic()
        (job,) = rt.ingest.submit(coll, [Upload(name, data)])
        res = rt.ingest.run_job(job.id)
        secs = time.monotonic() - t0
        if res is None:
            raise RuntimeError(f"{name}: {rt.ingest.get_job(job.id).error_message}")
        out[doc] = {"ingested": True, "seconds": secs, "chunks": res.chunks, "chars": len(data)}
        log(f"  {coll}: {name} -> {res.chunks} chunks in {secs:.1f} s")
    return out


def ask_items(rt, items: list[factoid.Item], *, budget: dict | None = None, deadline: float | None = None,
              log=print) -> list[dict]:
    """Asks each item in order; stops taking new questions when the mean time of one would pass `deadline`
    (the first always runs). One record per question asked."""
    from rag.service.answering import AskRequest

    records: list[dict] = []
    for n, it in enumerate(items, 1):
        if records and deadline is not None and time.monotonic() + mean([r["seconds"] for r in records]) > deadline:
            log(f"wall-clock target reached after {len(records)} of {len(items)} questions")
            break
        t0 = time.monotonic()
        first: list[float] = []  # when the first answer text reached the caller: what a streaming user waits for

        def on_token(piece: str) -> None:
            if not first and piece.strip():
                first.append(time.monotonic() - t0)

        result = rt.questions.ask(AskRequest(collection_name(it.doc), it.question, budget, None),
                                  on_token=on_token).to_dict()
        secs = time.monotonic() - t0
        usage = result.get("usage") or {}
        abstained = bool(result.get("abstained"))
        answer = result.get("answer") or ""
        correct = (not abstained) and factoid.is_correct(answer, it.gold)
        records.append({
            "id": it.id, "lang": it.lang, "doc": it.doc, "kind": it.kind, "answerable": it.answerable,
            "question": it.question, "gold": list(it.gold), "answer": answer, "abstained": abstained,
            "citations": len(result.get("citations") or []), "correct": correct,
            "matched": factoid.matched_key(answer, it.gold) if correct else None,
            "support": (result.get("support") or {}).get("method"),
            "model_calls": usage.get("model_calls", 0), "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0), "seconds": secs,
            "ttft_s": first[0] if first else None, "complete": result.get("complete"),
            "cached_prompt_tokens": sum(c.get("cached_prompt_tokens", 0) for c in result.get("calls") or ()),
            "stopped_by": result.get("stopped_by"), "question_id": result.get("id"),
        })
        mark = "abstained" if abstained else ("correct" if correct else "wrong")
        log(f"  [{n}/{len(items)}] {it.id} {mark} ({secs:.1f} s, {usage.get('model_calls', 0)} calls)")
    return records


def summarize(records: list[dict]) -> dict:
    """`factoid.score_by_lang` plus cost: calls, tokens and seconds per question."""
    out = factoid.score_by_lang(records)
    for key, rows in [("all", records)] + [(l, [r for r in records if r["lang"] == l]) for l in factoid.LANGS]:
        if key not in out:
            continue
        secs = [r["seconds"] for r in rows]
        ttft = [r["ttft_s"] for r in rows if r.get("ttft_s") is not None]
        out[key].update({
            "ttft_p50": percentile(ttft, 0.5) if ttft else None, "ttft_p90": percentile(ttft, 0.9) if ttft else None,
            "calls_q": mean([r["model_calls"] for r in rows]) if rows else None,
            "prompt_tokens_q": mean([r["prompt_tokens"] for r in rows]) if rows else None,
            "completion_tokens_q": mean([r["completion_tokens"] for r in rows]) if rows else None,
            "s_p50": percentile(secs, 0.5) if secs else None, "s_p90": percentile(secs, 0.9) if secs else None,
        })
    return out


def _documents_for(items: list[factoid.Item]) -> dict[str, tuple[str, bytes]]:
    docs = sorted({i.doc for i in items})
    missing = factoid.missing_packages(docs)
    if missing:
        raise factoid.MissingPackage(next(d for d in docs if factoid.DOCS[d].package in missing))
    return {d: (factoid.DOCS[d].filename, factoid.doc_bytes(d)) for d in docs}


def _models(rt, s: Settings) -> dict:
    gen = rt.generator
    return {"generator": s.generator, "runtime": getattr(gen, "runtime", None) or getattr(s, "generator_runtime", "transformers"),
            "mode": getattr(gen, "mode", None), "model_id": getattr(gen, "model_id", None), "embedder": s.embedder}


def run(settings: Settings, opts: Options, *, items: list[factoid.Item] | None = None,
        documents: dict[str, tuple[str, bytes]] | None = None, log=print) -> dict:
    """Selects, ingests what is needed, asks; returns the report data (see `write_report`).
    `items`/`documents` replace the shipped set and the installed Debian documents (tests)."""
    from rag.service.runtime import Runtime

    t_start = time.monotonic()
    pool = items if items is not None else factoid.load_set()
    langs = tuple(l for l in opts.langs if any(i.lang == l for i in pool))
    chosen = select(pool, opts.limit, langs)
    docs = documents if documents is not None else _documents_for(chosen)
    docs = {d: v for d, v in docs.items() if any(i.doc == d for i in chosen)}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rag-bench-factoid-") as tmp:
        data_dir = Path(opts.data_dir) if opts.data_dir else Path(tmp)
        s = settings.model_copy(update={"data_dir": data_dir, "model_cache_dir": settings.models_dir,
                                        "load_generator": True})
        rt = Runtime(s)
        t0 = time.monotonic()
        rt.start(worker=False)
        load_s = time.monotonic() - t0
        log(f"models loaded in {load_s:.1f} s; {len(chosen)} questions over {len(docs)} document(s)")
        try:
            doc_info = ingest_documents(rt, docs, s.embedder, log)
            ingest_s = sum(d["seconds"] for d in doc_info.values())
            deadline = None if opts.minutes is None else t_start + opts.minutes * 60
            t_ask = time.monotonic()
            records = ask_items(rt, chosen, budget=opts.budget, deadline=deadline, log=log)
            ask_s = time.monotonic() - t_ask
            models = _models(rt, s)
        finally:
            rt.close()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "options": {"langs": list(langs), "limit": opts.limit, "minutes": opts.minutes,
                    "data_dir": str(opts.data_dir) if opts.data_dir else None, "budget": opts.budget},
        "models": models,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "cpu": read_cpu().model, "cpu_class": read_cpu().cpu_class,
                    "load": load_start, "load_end": os.getloadavg(),
                    "threads": os.environ.get("RAG_THREADS")},
        "set": {"path": str(factoid.DATA) if items is None else None, "items": len(pool), "selected": len(chosen),
                "asked": len(records)},
        "docs": {d: dict(v, package=factoid.DOCS[d].package if d in factoid.DOCS else None,
                         version=factoid.package_version(d) if d in factoid.DOCS else None)
                 for d, v in doc_info.items()},
        "model_load_s": load_s, "ingest_s": ingest_s, "ask_s": ask_s, "total_s": time.monotonic() - t_start,
        "peak_rss_mb": peak_rss_mb(),
        "summary": summarize(records),
        "records": records,
    }


# ---------------------------------------------------------------- inside `rag bench qa`

def qa_summary(rt, settings: Settings, per_lang: int, *, deadline: float | None = None, log=print) -> dict:
    """The factoid summary for `rag bench qa --factoid N`: N questions per language, asked with the qa run's
    loaded runtime (its temporary data dir) over the documents they need."""
    chosen = select(factoid.load_set(), per_lang, factoid.LANGS)
    docs = _documents_for(chosen)
    t0 = time.monotonic()
    info = ingest_documents(rt, docs, settings.embedder, log)
    ingest_s = time.monotonic() - t0
    records = ask_items(rt, chosen, deadline=deadline, log=log)
    return {"per_lang": per_lang, "models": _models(rt, settings), "ingest_s": ingest_s, "docs": info,
            "summary": summarize(records), "records": records}
