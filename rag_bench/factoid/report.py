"""`rag bench factoid`, the report: markdown and JSON files, stdout table, two reports side by side, and
the factoid section of the `rag bench qa` report. Written from the data `rag_bench.factoid.runner` returns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rag_bench.markdown import fmt, table

_CITE_MARK = re.compile(r"\s*\[\d+(?:\s*[,，]\s*\d+)*\]")


COLUMNS = [("n", "n", 0), ("accuracy", "accuracy", 2), ("confident_wrong_rate", "confident-wrong", 2),
           ("abstain_unanswerable", "abstain (unanswerable)", 2), ("false_abstention", "false abstention", 2),
           ("calls_q", "calls/q", 2), ("prompt_tokens_q", "prompt tok/q", 0), ("s_p50", "s/q p50", 1),
           ("s_p90", "s/q p90", 1), ("ttft_p50", "TTFT p50", 1), ("ttft_p90", "TTFT p90", 1)]


def main_table(data: dict) -> list[str]:
    rows = []
    for key, s in data["summary"].items():
        rows.append([key] + [fmt(float(s[k]) if isinstance(s.get(k), (int, float)) and k != "n" else s.get(k), d)
                             for k, _, d in COLUMNS])
    return table(["lang"] + [h for _, h, _ in COLUMNS], rows)


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
    L += [f"Machine: {mc['cpus']} CPUs ({mc.get('cpu', '?')}, class {mc.get('cpu_class', '?')}), {mc['platform']}, Python {mc['python']}; load average "
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
    L += table(["id", "question", "gold", "verdict", "cites", "answer"], rows) + [""]
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
            rows.append([key, h, fmt(va if k == "n" or va is None else float(va), d),
                         fmt(vb if k == "n" or vb is None else float(vb), d), _ratio(va, vb)])
    for k, h in (("peak_rss_mb", "peak RSS MB"), ("model_load_s", "model load s"), ("ask_s", "answering s")):
        rows.append(["run", h, fmt(float(a[k]), 0), fmt(float(b[k]), 0), _ratio(a[k], b[k])])
    return out + table(["lang", "metric", "A", "B", "B/A"], rows)


def load_report(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- inside `rag bench qa`

def qa_report_lines(fs: dict) -> list[str]:
    """Markdown lines for the factoid section of the qa report."""
    data = {"summary": fs["summary"]}
    n = fs["summary"]["all"]["n"]
    return ["## Factoid accuracy (rag_bench.eval.factoid)", "",
            f"{n} questions ({fs['per_lang']} per language, spread over the set) on the Debian Reference/FAQ "
            f"documents they need (ingested in {fs['ingest_s']:.0f} s), same generator: `{fs['models']['generator']}` "
            f"/ {fs['models']['runtime']}. Full runs: `rag bench factoid`.", ""] + main_table(data) + [""]
