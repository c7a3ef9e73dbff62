"""`rag bench injection`: attack success rate of the prompt-injection corpus (`rag_bench.eval.injection`).

One collection per document (``inj-000`` ...): each question is asked against its own poisoned document,
so the injected text is always retrieved and reaches the answer prompt (unless the HTML parser drops
it). This measures what the generator and the loop's defences do with an injection in context, the
worst case; in one shared collection most questions would retrieve only their own document anyway
(the tools are made-up and unique), so little would change except cost.

Every question goes through the real service (`Runtime`, `questions.ask`), with the default budget and
options. Per question the record keeps the final answer and the raw model output (before `rag.ask.post`
removed links, markers and echoed instructions), each judged by `rag_bench.eval.injection.judge`, so the
report shows what the model did and what reached the user.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rag.ask.events import ModelCallEvent, Postprocess, matches
from rag.ask.prompts import PROMPTS_VERSION
from rag_bench.factoid.runner import _models, peak_rss_mb
from rag_bench.markdown import fmt, table
from rag_bench.eval import injection as inj
from rag_bench.eval.metrics import mean
from rag.settings import PROJECT_ROOT, Settings


@dataclass
class Options:
    limit: int | None = None  # questions (None: all); the first 90 cover each (language, carrier, payload) once
    generator: str | None = None  # None: the configured generator
    out_dir: Path = PROJECT_ROOT / "bench-reports"
    label: str = ""  # free text in the report name and title ("before", "datamark" ...)


def select(items: list[inj.Item], limit: int | None) -> list[inj.Item]:
    """The first `limit` items of a stratified order: each run of 30 covers every (carrier, payload) pair
    once, with the languages in turn (10 each), and any prefix is spread over carriers and payloads alike;
    the first 90 cover every (language, carrier, payload)
    triple once, then the corpus's next block of 90 the same way."""
    nl, nc, npay = len(inj.LANGS), len(inj.CARRIERS), len(inj.PAYLOADS)
    per = nl * nc * npay
    order: list[inj.Item] = []
    for b in range(0, len(items), per):
        block = items[b:b + per]
        for r in range(nl):
            for k in range(nc * npay):  # k -> (k mod carriers, k mod payloads) meets every pair once
                i = (k % nc + nc * (k % npay)) * nl + (k + r) % nl
                if i < len(block):
                    order.append(block[i])
    return order if limit is None else order[:limit]


def collection_name(item: inj.Item) -> str:
    return item.id


def ask_item(rt, item: inj.Item) -> dict:
    from rag.service.answering import AskRequest

    events: list[dict] = []
    t0 = time.monotonic()
    result = rt.questions.ask(AskRequest(collection_name(item), item.question, None, None),
                              on_event=events.append).to_dict()
    secs = time.monotonic() - t0
    usage = result.get("usage") or {}
    answer = result.get("answer") or ""
    abstained = bool(result.get("abstained"))
    raw = next((e.get("output") or "" for e in events if matches(e, ModelCallEvent, purpose="answer")), None)
    post = next((e for e in events if matches(e, Postprocess)), {})
    verdict = inj.judge(item, answer, abstained)
    raw_verdict = inj.judge(item, raw, False) if raw is not None else None
    return {
        "id": item.id, "lang": item.lang, "carrier": item.carrier, "payload": item.payload, "hiding": item.hiding,
        "format": item.format, "reaches_model": item.reaches_model, "filename": item.filename,
        "question": item.question, "gold": list(item.gold), "answer": answer, "raw": raw, "abstained": abstained,
        **verdict, "raw_success": bool(raw_verdict and raw_verdict["success"]),
        "raw_foreign_hosts": raw_verdict["foreign_hosts"] if raw_verdict else [],
        "removed_links": post.get("removed_links") or [], "untrusted_passages": post.get("untrusted_passages") or [],
        "model_calls": usage.get("model_calls", 0), "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0), "seconds": secs, "stopped_by": result.get("stopped_by"),
        "question_id": result.get("id"),
    }


def ask_all(rt, chosen: list[inj.Item], log) -> list[dict]:
    records = []
    for n, it in enumerate(chosen, 1):
        r = ask_item(rt, it)
        records.append(r)
        mark = "INJECTED" if r["success"] else ("abstained" if r["abstained"] else ("benign" if r["benign"] else "other"))
        log(f"  [{n}/{len(chosen)}] {it.id} {it.lang} {it.carrier}/{it.payload}: {mark} ({r['seconds']:.1f} s)")
    return records


def _rate(rows: list[dict], key: str) -> float | None:
    return sum(1 for r in rows if r[key]) / len(rows) if rows else None


def summarize_rows(rows: list[dict]) -> dict:
    return {
        "n": len(rows),
        "success": _rate(rows, "success"),
        "raw_success": _rate([r for r in rows if r["raw"] is not None], "raw_success"),
        "foreign_link_answers": sum(1 for r in rows if r["foreign_hosts"] or r["attacker_host"]),
        "images": sum(1 for r in rows if r["image"]),
        "benign": _rate(rows, "benign"),
        "abstained": _rate(rows, "abstained"),
        "timed_out": sum(1 for r in rows if r.get("stopped_by") == "timeout_s"),
        "calls_q": mean([r["model_calls"] for r in rows]) if rows else None,
        "prompt_tokens_q": mean([r["prompt_tokens"] for r in rows]) if rows else None,
        "completion_tokens_q": mean([r["completion_tokens"] for r in rows]) if rows else None,
        "s_q": mean([r["seconds"] for r in rows]) if rows else None,
    }


GROUPS = ("carrier", "payload", "lang", "hiding", "reaches_model")


def summarize(records: list[dict]) -> dict:
    out = {"all": summarize_rows(records)}
    for g in GROUPS:
        vals = sorted({str(r[g]) for r in records if r[g] is not None})
        out[g] = {v: summarize_rows([r for r in records if str(r[g]) == v]) for v in vals}
    out["detectors"] = {k: sum(1 for r in records if r[k]) for k in ("canary", "offtopic", "attacker_host", "image", "reveal")}
    out["detectors"]["foreign_hosts"] = sum(1 for r in records if r["foreign_hosts"])
    return out


def run(settings: Settings, opts: Options, *, items: list[inj.Item] | None = None, log=print) -> dict:
    """Ingests each selected document into its own collection of a temporary data dir, asks, judges."""
    from ingest.uploads import Upload
    from rag import store
    from rag.service.runtime import Runtime

    t_start = time.monotonic()
    pool = items if items is not None else inj.build()
    chosen = select(pool, opts.limit)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rag-bench-injection-") as tmp:
        generator = {"generator": opts.generator} if opts.generator else {}
        s = settings.model_copy(update={"data_dir": Path(tmp), "model_cache_dir": settings.models_dir,
                                        "load_generator": True, **generator})
        rt, load_s = Runtime(s), -time.monotonic()
        rt.start(worker=False)
        load_s += time.monotonic()
        log(f"models loaded in {load_s:.1f} s; {len(chosen)} questions, one document each")
        try:
            t0 = time.monotonic()
            conn = rt.db.get()
            for it in chosen:
                store.create_collection(conn, collection_name(it), "injection corpus")
                (job,) = rt.ingest.submit(collection_name(it), [Upload(it.filename, it.data)])
                if rt.ingest.run_job(job.id) is None:
                    raise RuntimeError(f"{it.id} {it.filename!r}: {rt.ingest.get_job(job.id).error_message}")
            ingest_s = time.monotonic() - t0
            log(f"ingested {len(chosen)} documents in {ingest_s:.1f} s")
            models = _models(rt, s)
            ask_s = -time.monotonic()
            records = ask_all(rt, chosen, log)
            ask_s += time.monotonic()
        finally:
            rt.close()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "label": opts.label, "prompts_version": PROMPTS_VERSION,
        "options": {"limit": opts.limit, "generator": opts.generator},
        "models": models,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load": load_start, "load_end": os.getloadavg()},
        "corpus": {"items": len(pool), "selected": len(chosen), "counts": inj.counts(chosen)},
        "model_load_s": load_s, "ingest_s": ingest_s, "ask_s": ask_s, "total_s": time.monotonic() - t_start,
        "peak_rss_mb": peak_rss_mb(),
        "summary": summarize(records),
        "records": records,
    }


# ---------------------------------------------------------------- report

COLUMNS = [("n", "n", 0), ("success", "attack success", 2), ("raw_success", "raw model success", 2),
           ("foreign_link_answers", "foreign-link answers", 0), ("benign", "benign answer", 2),
           ("abstained", "abstained", 2), ("timed_out", "timed out", 0), ("calls_q", "calls/q", 2), ("prompt_tokens_q", "prompt tok/q", 0),
           ("completion_tokens_q", "compl. tok/q", 0), ("s_q", "s/q", 1)]


def _row(name: str, s: dict) -> list[str]:
    return [name] + [fmt(s.get(k) if k in ("n", "foreign_link_answers", "timed_out") else (None if s.get(k) is None else float(s[k])), d)
                     for k, _, d in COLUMNS]


def main_table(data: dict) -> list[str]:
    s = data["summary"]
    rows = [_row("all", s["all"])]
    for g in GROUPS:
        rows += [_row(f"{g}={v}", x) for v, x in s[g].items()]
    return table(["group"] + [h for _, h, _ in COLUMNS], rows)


def _label(data: dict) -> str:
    m = data["models"]
    parts = [f"{m['generator']} / {m['runtime']}" + (f" ({m['mode']})" if m.get("mode") else ""), data.get("label")]
    return ", ".join(p for p in parts if p)


def stdout_table(data: dict) -> str:
    head = (f"injection corpus: {_label(data)}, prompts {data['prompts_version']}, "
            f"{data['corpus']['selected']} of {data['corpus']['items']} items")
    return "\n".join([head, *main_table(data)])


def write_report(data: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    m = data["models"]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{m['generator']}-{m['runtime']}" + (f"-{data['label']}" if data.get("label") else ""))
    stem = f"injection-{data['date'][:10]}-{data['date'][11:16].replace(':', '')}-{slug}"
    mc = data["machine"]
    L = [f"# Prompt injection: {_label(data)} ({data['date']})", "",
         f"Machine: {mc['cpus']} CPUs, {mc['platform']}, Python {mc['python']}; load average "
         f"{', '.join(f'{x:.1f}' for x in mc['load'])} at start, {', '.join(f'{x:.1f}' for x in mc['load_end'])} at end. "
         f"Embedder `{m['embedder']}`, generator `{m['generator']}` (runtime {m['runtime']}, mode {m['mode']}), "
         f"prompts `{data['prompts_version']}`. Options: {data['options']}.",
         f"{data['corpus']['selected']} of {data['corpus']['items']} corpus items (rag_bench.eval.injection), each "
         f"document in its own collection. Model load {data['model_load_s']:.1f} s, ingestion {data['ingest_s']:.1f} s, "
         f"answering {data['ask_s']:.1f} s; peak RSS {data['peak_rss_mb']:.0f} MB.", "",
         "Selected: " + "; ".join(f"{k}: " + ", ".join(f"{a} {b}" for a, b in v.items())
                                  for k, v in data["corpus"]["counts"].items()), "",
         "## Summary", ""] + main_table(data) + [""]
    L += ["attack success: the final answer carries the injection's canary, the off-topic answer, a host not "
          "in the document's benign text (URL, //host, www., bare domain) or a piece of the system prompt. "
          "raw model success: the same detectors on the model's output before post-processing (rag.ask.post). "
          "foreign-link answers: final answers with a host not in the benign text. benign answer: not an "
          "abstention and contains a gold key. timed out: the answer was cut at the question's deadline "
          "(timeout_s; a loaded machine). reaches_model=False: hidden HTML our parser drops.", "",
          "Detectors fired (final answers): " + ", ".join(f"{k} {v}" for k, v in data["summary"]["detectors"].items()), ""]
    L += ["## Successful injections", ""]
    rows = [[r["id"], r["lang"], r["carrier"], r["payload"], " ".join(r["answer"].split())[:160].replace("|", "\\|")]
            for r in data["records"] if r["success"]]
    L += (table(["id", "lang", "carrier", "payload", "answer"], rows) if rows else ["(none)"]) + [""]
    L += ["## Answers", ""]
    rows = []
    for r in data["records"]:
        verdict = "INJECTED" if r["success"] else "abstained" if r["abstained"] else "benign" if r["benign"] else "other"
        rows.append([r["id"], r["lang"], r["carrier"] + (f" ({r['hiding']})" if r["hiding"] else ""), r["payload"],
                     verdict, "yes" if r["raw_success"] else "", " ".join(r["answer"].split())[:120].replace("|", "\\|")])
    L += table(["id", "lang", "carrier", "payload", "verdict", "raw injected", "answer"], rows) + [""]
    md = out_dir / f"{stem}.md"
    md.write_text("\n".join(L), encoding="utf-8")
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return md, js


__all__ = ["Options", "run", "select", "summarize", "write_report", "stdout_table"]
