"""`rag bench conversations`: follow-up accuracy against the same questions asked standalone, and what
condensing costs (`rag_bench.eval.conversations`).

Each dialogue is a conversation (`rt.conversations`) over the collection holding its document (the
factoid bench's collections and ingestion); each turn is asked in it as the user would, and each
follow-up's gold standalone form is also asked as an ordinary question. Scoring is the factoid set's
(`factoid.is_correct`). Reported per language: follow-up accuracy, standalone accuracy and the
difference in points; condense calls and tokens per follow-up, total calls and tokens per follow-up
against its standalone twin; how often the rule (`rag.text.followup` and key terms) called for
condensing on dependent and on standalone follow-ups, and on the 184 standalone factoid questions
(no model: the rule alone).
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

from rag.settings import PROJECT_ROOT, Settings
from rag_bench.eval import conversations as cset
from rag_bench.eval import factoid
from rag_bench.eval.metrics import mean
from rag_bench.factoid.runner import _documents_for, _models, collection_name, ingest_documents, peak_rss_mb
from rag_bench.markdown import fmt, table


@dataclass
class Options:
    langs: tuple[str, ...] = factoid.LANGS
    limit: int | None = None  # dialogues per language (None: all)
    minutes: float | None = None  # stop starting dialogues when the next would not fit
    data_dir: Path | None = None
    out_dir: Path = PROJECT_ROOT / "bench-reports"


def select(dialogues: list[cset.Dialogue], langs, limit: int | None) -> list[cset.Dialogue]:
    """Interleaved across languages, so a run cut short by its time target stays balanced."""
    per = [[d for d in dialogues if d.lang == l][:limit] for l in langs]
    return [x[r] for r in range(max((len(x) for x in per), default=0)) for x in per if r < len(x)]


def _record(rt, answer, turn: cset.Turn) -> dict:
    d = answer.to_dict()
    trace = rt.questions.trace(d["id"])
    steps = [e for e in trace["events"] if e.get("step") == "condense"]
    by = d["usage"].get("by_purpose", {})
    condense = by.get("condense", {})
    return {"id": d["id"], "answer": d["answer"], "abstained": d["abstained"],
            "correct": (not d["abstained"]) and factoid.is_correct(d["answer"], turn.gold),
            "model_calls": d["usage"]["model_calls"], "prompt_tokens": d["usage"]["prompt_tokens"],
            "completion_tokens": d["usage"]["completion_tokens"], "condense_calls": condense.get("calls", 0),
            "condense_tokens": condense.get("prompt_tokens", 0) + condense.get("completion_tokens", 0),
            "condense": steps[0]["verdict"] if steps else None, "standalone_question": d.get("standalone_question")}


def ask_dialogue(rt, dl: cset.Dialogue, log) -> list[dict]:
    """The dialogue's turns in one conversation; each follow-up also asked standalone."""
    from rag.service.answering import AskRequest

    coll = collection_name(dl.doc)
    cid = rt.conversations.create(coll, dl.id)["id"]
    rows = []
    for n, turn in enumerate(dl.turns):
        t0 = time.monotonic()
        rec = _record(rt, rt.questions.ask(rt.conversations.prepare(cid, turn.question)), turn)
        row = {"dialogue": dl.id, "lang": dl.lang, "turn": n, "item": turn.item, "question": turn.question,
               "standalone": turn.standalone, "gold": list(turn.gold), "dependent": turn.dependent, "asked": rec}
        if n > 0:
            row["alone"] = _record(rt, rt.questions.ask(AskRequest(coll, turn.standalone)), turn)
        row["seconds"] = time.monotonic() - t0
        rows.append(row)
        mark = "ok" if rec["correct"] else ("abstained" if rec["abstained"] else "wrong")
        alone = "" if n == 0 else f", standalone {'ok' if row['alone']['correct'] else 'not ok'}"
        log(f"  {dl.id} turn {n} {mark} ({rec['condense'] or '-'}{alone}; {row['seconds']:.1f} s)")
    return rows


def rule_on_factoid() -> dict:
    """How often the condensing rule fires on the factoid set's questions (all standalone): false alarms."""
    from rag.ask.condense import needs_condensing
    from rag.ask.question import Question
    from rag.ask.terms import extract_key_terms

    items = factoid.load_set()
    fired = [i.id for i in items
             if needs_condensing(Question(i.question, i.lang, frozenset(), extract_key_terms(i.question, i.lang), 0))[1]]
    return {"questions": len(items), "flagged": len(fired), "rate": len(fired) / len(items), "ids": fired}


def summarize(rows: list[dict]) -> dict:
    out = {}
    follow = [r for r in rows if r["turn"] > 0]
    for key, rs in [("all", follow)] + [(l, [r for r in follow if r["lang"] == l]) for l in factoid.LANGS]:
        if not rs:
            continue
        dep, alone = [r for r in rs if r["dependent"]], [r for r in rs if not r["dependent"]]
        acc = mean([r["asked"]["correct"] for r in rs])
        acc_alone = mean([r["alone"]["correct"] for r in rs])
        out[key] = {
            "follow_ups": len(rs), "dependent": len(dep),
            "accuracy": acc, "standalone_accuracy": acc_alone, "delta_points": 100 * (acc - acc_alone),
            "dependent_accuracy": mean([r["asked"]["correct"] for r in dep]) if dep else None,
            "dependent_standalone_accuracy": mean([r["alone"]["correct"] for r in dep]) if dep else None,
            "condense_calls": mean([r["asked"]["condense_calls"] for r in rs]),
            "condense_tokens": mean([r["asked"]["condense_tokens"] for r in rs]),
            "extra_calls": mean([r["asked"]["model_calls"] - r["alone"]["model_calls"] for r in rs]),
            "extra_tokens": mean([(r["asked"]["prompt_tokens"] + r["asked"]["completion_tokens"])
                                  - (r["alone"]["prompt_tokens"] + r["alone"]["completion_tokens"]) for r in rs]),
            "flagged_dependent": mean([r["asked"]["condense"] != "skip" for r in dep]) if dep else None,
            "flagged_standalone": mean([r["asked"]["condense"] != "skip" for r in alone]) if alone else None,
        }
    return out


def run(settings: Settings, opts: Options, *, log=print) -> dict:
    from rag.service.runtime import Runtime

    t_start = time.monotonic()
    chosen = select(cset.load_set(), opts.langs, opts.limit)
    items = {i.id: i for i in factoid.load_set()}
    docs = _documents_for([items[d.turns[0].item] for d in chosen])
    with tempfile.TemporaryDirectory(prefix="rag-bench-conv-") as tmp:
        s = settings.model_copy(update={"data_dir": Path(opts.data_dir or tmp), "model_cache_dir": settings.models_dir,
                                        "load_generator": True})
        rt = Runtime(s)
        rt.start(worker=False)
        try:
            ingest_documents(rt, docs, s.embedder, log)
            deadline = None if opts.minutes is None else t_start + opts.minutes * 60
            rows: list[dict] = []
            per: list[float] = []
            for dl in chosen:
                if per and deadline is not None and time.monotonic() + mean(per) > deadline:
                    log(f"wall-clock target reached after {len(per)} of {len(chosen)} dialogues")
                    break
                t0 = time.monotonic()
                rows += ask_dialogue(rt, dl, log)
                per.append(time.monotonic() - t0)
            models = _models(rt, s)
        finally:
            rt.close()
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "models": models,
            "options": {"langs": list(opts.langs), "limit": opts.limit, "minutes": opts.minutes,
                        "history_tokens": settings.history_tokens},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_end": os.getloadavg()},
            "dialogues": len(per), "selected": len(chosen), "total_s": time.monotonic() - t_start,
            "peak_rss_mb": peak_rss_mb(), "rule_on_factoid": rule_on_factoid(), "summary": summarize(rows),
            "rows": rows}


COLUMNS = [("follow_ups", "follow-ups", 0), ("dependent", "dependent", 0), ("accuracy", "follow-up acc", 2),
           ("standalone_accuracy", "standalone acc", 2), ("delta_points", "delta (points)", 1),
           ("dependent_accuracy", "dependent acc", 2), ("dependent_standalone_accuracy", "its standalone acc", 2),
           ("condense_calls", "condense calls/follow-up", 2), ("condense_tokens", "condense tok/follow-up", 0),
           ("extra_calls", "calls vs standalone", 2), ("extra_tokens", "tokens vs standalone", 0),
           ("flagged_dependent", "rule: dependent flagged", 2), ("flagged_standalone", "rule: standalone flagged", 2)]


def stdout_table(data: dict) -> str:
    m = data["models"]
    rows = [[k] + [fmt(s.get(c), d) for c, _, d in COLUMNS] for k, s in data["summary"].items()]
    rule = data["rule_on_factoid"]
    return "\n".join([f"conversations: {m['generator']} / {m['runtime']}, {data['dialogues']} dialogues"]
                     + table(["lang"] + [h for _, h, _ in COLUMNS], rows)
                     + [f"rule on the factoid set's standalone questions: {rule['flagged']} of {rule['questions']} "
                        f"flagged ({rule['rate']:.2f})"])


def write_report(data: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    m = data["models"]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{m['generator']}-{m['runtime']}")
    stem = f"conversations-{data['date'][:10]}-{data['date'][11:16].replace(':', '')}-{slug}"
    lines = [f"# Conversations: {m['generator']} / {m['runtime']} ({data['date']})", "", stdout_table(data), "",
             "| dialogue | turn | question | asked as | correct | standalone correct |", "|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['dialogue']} | {r['turn']} | {r['question']} | {r['asked'].get('standalone_question') or ''} "
                     f"| {r['asked']['correct']} | {r.get('alone', {}).get('correct', '')} |")
    md, js = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    js.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return md, js
