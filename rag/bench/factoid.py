"""`rag bench factoid`: short-answer accuracy on the factoid set (`rag.eval.factoid`), per model × runtime.

Every question goes through the asking loop (`rt.questions.ask`) against the collection holding its own
document (`factoid-<doc>`: one collection per Debian document, so an English question is asked over the
English Reference or FAQ, a Traditional Chinese one over the zh-tw Reference). Only the documents the
sampled questions need are ingested; with a persistent `data_dir` a document already in its collection is
not ingested again, so the same questions can be re-asked with another generator or runtime cheaply.

The generator and its runtime come from settings (`RAG_GENERATOR`, `RAG_GENERATOR_RUNTIME`); the report
names both, and `compare_tables` puts two reports side by side.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rag.eval import factoid
from rag.eval.metrics import mean, percentile
from rag.settings import PROJECT_ROOT, Settings

_CITE_MARK = re.compile(r"\s*\[\d+(?:\s*[,，]\s*\d+)*\]")


@dataclass
class Options:
    langs: tuple[str, ...] = factoid.LANGS
    limit: int | None = None  # questions per language (None: all)
    minutes: float | None = None  # wall-clock target for the whole run; None: every selected question
    data_dir: Path | None = None  # persistent state (reused across runs); None: a temporary folder
    out_dir: Path = PROJECT_ROOT / "bench-reports"
    budget: dict | None = None  # the ask budget (None: the service default)


def _spread(items: list, phase: float = 0.0) -> list:
    from rag.bench.qa import _spread_order

    return _spread_order(items, phase)


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
        a_order, u_order = _spread(ans)[:n_a], _spread(una)[:n_u]
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
    from rag.errors import RagError
    from rag.store import repository as repo

    conn = rt.db.get()
    out = {}
    for doc, (name, data) in documents.items():
        coll = collection_name(doc)
        try:
            c = repo.get_collection(conn, coll)
            if c.description and c.description != f"embedder={embedder}":
                raise RuntimeError(f"collection {coll!r} was built with {c.description}, not embedder={embedder}: "
                                   "use another --data-dir")
        except RagError:
            repo.create_collection(conn, coll, f"embedder={embedder}")
        existing = repo.find_document_by_sha(conn, coll, hashlib.sha256(data).hexdigest())
        if existing is not None:  # the same bytes are stored once per collection
            out[doc] = {"ingested": False, "seconds": 0.0, "chunks": existing.chunk_count, "chars": len(data)}
            log(f"  {coll}: already holds {name} ({existing.chunk_count} chunks), not ingested again")
            continue
        t0 = time.monotonic()
        (job,) = rt.ingest.submit(coll, [Upload(name, data)])
        res = rt.ingest.run_job(job.id)
        secs = time.monotonic() - t0
        if res is None:
            raise RuntimeError(f"{name}: {repo.get_job(conn, job.id).error_message}")
        out[doc] = {"ingested": True, "seconds": secs, "chunks": res.chunks, "chars": len(data)}
        log(f"  {coll}: {name} -> {res.chunks} chunks in {secs:.1f} s")
    return out


def ask_items(rt, items: list[factoid.Item], *, budget: dict | None = None, deadline: float | None = None,
              log=print) -> list[dict]:
    """Asks each item in order; stops taking new questions when the mean time of one would pass `deadline`
    (the first always runs). One record per question asked."""
    from rag.answering import AskRequest

    records: list[dict] = []
    for n, it in enumerate(items, 1):
        if records and deadline is not None and time.monotonic() + mean([r["seconds"] for r in records]) > deadline:
            log(f"wall-clock target reached after {len(records)} of {len(items)} questions")
            break
        t0 = time.monotonic()
        result = rt.questions.ask(AskRequest(collection_name(it.doc), it.question, budget, None))
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
        out[key].update({
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
    from rag.runtime import Runtime

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


# ---------------------------------------------------------------- report

def _f(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


COLUMNS = [("n", "n", 0), ("accuracy", "accuracy", 2), ("confident_wrong_rate", "confident-wrong", 2),
           ("abstain_unanswerable", "abstain (unanswerable)", 2), ("false_abstention", "false abstention", 2),
           ("calls_q", "calls/q", 2), ("prompt_tokens_q", "prompt tok/q", 0), ("s_p50", "s/q p50", 1),
           ("s_p90", "s/q p90", 1)]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def main_table(data: dict) -> list[str]:
    rows = []
    for key, s in data["summary"].items():
        rows.append([key] + [_f(float(s[k]) if isinstance(s.get(k), (int, float)) and k != "n" else s.get(k), d)
                             for k, _, d in COLUMNS])
    return _table(["lang"] + [h for _, h, _ in COLUMNS], rows)


def _label(data: dict) -> str:
    m = data["models"]
    return f"{m['generator']} / {m['runtime']}" + (f" ({m['mode']})" if m.get("mode") else "")


def stdout_table(data: dict) -> str:
    return "\n".join([f"factoid set: {_label(data)}, {data['set']['asked']} questions, peak RSS "
                      f"{data['peak_rss_mb']:.0f} MB"] + main_table(data))


def write_report(data: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    m = data["models"]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{m['generator']}-{m['runtime']}")
    stem = f"factoid-{data['date'][:10]}-{data['date'][11:16].replace(':', '')}-{slug}"
    L = [f"# Factoid accuracy: {_label(data)} ({data['date']})", ""]
    mc = data["machine"]
    L += [f"Machine: {mc['cpus']} CPUs, {mc['platform']}, Python {mc['python']}; load average "
          f"{', '.join(f'{x:.1f}' for x in mc['load'])} at start, {', '.join(f'{x:.1f}' for x in mc['load_end'])} "
          f"at end. Embedder `{m['embedder']}`; generator `{m['generator']}` (runtime {m['runtime']}, mode "
          f"{m['mode']}). Options: {data['options']}.",
          f"Asked {data['set']['asked']} of {data['set']['selected']} selected questions (set of {data['set']['items']}). "
          f"Model load {data['model_load_s']:.1f} s, ingestion {data['ingest_s']:.1f} s, answering "
          f"{data['ask_s']:.1f} s, total {data['total_s'] / 60:.1f} min; peak RSS {data['peak_rss_mb']:.0f} MB.", ""]
    L += ["Documents: " + "; ".join(
        f"{d} (`{v.get('package')}` {v.get('version')}): {v['chunks']} chunks, "
        + (f"ingested in {v['seconds']:.1f} s" if v["ingested"] else "already ingested")
        for d, v in data["docs"].items()), ""]
    L += ["## Summary", ""] + main_table(data) + [""]
    L += ["accuracy: answerable questions whose answer contains a gold key after normalisation (abstaining is "
          "wrong). confident-wrong: answered with at least one citation and wrong (any answer to an unanswerable "
          "question is wrong), over all answered questions. abstain (unanswerable): share of unanswerable "
          "questions refused (higher is better). false abstention: share of answerable questions refused.", ""]
    s = data["summary"]["all"]
    L += [f"Answered {s['answered']} of {s['n']}; correct {s['correct']} of {s['answerable']} answerable; "
          f"confident-wrong {s['confident_wrong']}, wrong without citations {s['wrong_uncited']}.", ""]
    L += ["## Answers", ""]
    rows = []
    for r in data["records"]:
        verdict = "abstained" if r["abstained"] else ("correct" if r["correct"] else "wrong")
        ans = " ".join(_CITE_MARK.sub("", r["answer"]).split())[:160].replace("|", "\\|")
        rows.append([r["id"], r["question"].replace("|", "\\|"), " / ".join(r["gold"]) or "(none)", verdict,
                     str(r["citations"]), ans])
    L += _table(["id", "question", "gold", "verdict", "cites", "answer"], rows) + [""]
    md = out_dir / f"{stem}.md"
    md.write_text("\n".join(L), encoding="utf-8")
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return md, js


def _ratio(a, b) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or a == 0:
        return "—"
    return f"{b / a:.2f}"


def compare_tables(a: dict, b: dict) -> list[str]:
    """Two reports side by side (overall and per language): A, B and B/A."""
    out = [f"A: {_label(a)} ({a['date']}, {a['set']['asked']} questions)",
           f"B: {_label(b)} ({b['date']}, {b['set']['asked']} questions)", ""]
    ids_a = {r["id"] for r in a["records"]}
    common = ids_a & {r["id"] for r in b["records"]}
    if common != ids_a or len(common) != len(b["records"]):
        out += [f"note: the runs share {len(common)} questions; figures below are over each run's own questions.", ""]
    rows = []
    for key in a["summary"]:
        if key not in b["summary"]:
            continue
        for k, h, d in COLUMNS:
            va, vb = a["summary"][key].get(k), b["summary"][key].get(k)
            rows.append([key, h, _f(va if k == "n" or va is None else float(va), d),
                         _f(vb if k == "n" or vb is None else float(vb), d), _ratio(va, vb)])
    for k, h in (("peak_rss_mb", "peak RSS MB"), ("model_load_s", "model load s"), ("ask_s", "answering s")):
        rows.append(["run", h, _f(float(a[k]), 0), _f(float(b[k]), 0), _ratio(a[k], b[k])])
    return out + _table(["lang", "metric", "A", "B", "B/A"], rows)


def load_report(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


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


def qa_report_lines(fs: dict) -> list[str]:
    """Markdown lines for the factoid section of the qa report."""
    data = {"summary": fs["summary"]}
    n = fs["summary"]["all"]["n"]
    return ["## Factoid accuracy (rag.eval.factoid)", "",
            f"{n} questions ({fs['per_lang']} per language, spread over the set) on the Debian Reference/FAQ "
            f"documents they need (ingested in {fs['ingest_s']:.0f} s), same generator: `{fs['models']['generator']}` "
            f"/ {fs['models']['runtime']}. Full runs: `rag bench factoid`.", ""] + main_table(data) + [""]
