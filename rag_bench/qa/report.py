"""`rag bench qa`, the report: per-configuration summaries, the markdown report with its charts, the stdout table.

Written from the data `rag_bench.qa.runner.run` returns (also saved as JSON next to the report).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from rag_bench.factoid.report import qa_report_lines
from rag_bench.markdown import fmt, table
from rag_bench.qa.configs import (ALL_CONFIGS, ANSWERING, CONTEXT_TOP, EQUAL_CHARS, LI_TOP, LLAMA_RETRIEVAL, LOOP,
                                  RATE_KEYS, RETRIEVAL, VARIANTS)
from rag_bench.eval.metrics import mean, percentile


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


STAGES = ["retrieve", "rewrite", "answer", "other"]  # seconds per question, by stage
PATHS = ["sufficient→answer", "rewrite", "expansion", "abstain", "budget stop"]  # the loop's decision paths
MAIN_COLS = [("n", "n"), ("r1", "R@1"), ("r5", "R@5"), ("r10", "R@10"), ("mrr", "MRR"),
             ("r_chars", f"R@{EQUAL_CHARS // 1000}k chars"), ("ctx_recall", "ctx recall"),
             ("f1", "F1"), ("rouge_l", "ROUGE-L"), ("cite_precision", "cite prec"), ("abstained", "abstain"),
             ("model_calls", "calls/q"), ("prompt_tokens", "prompt tok/q"), ("completion_tokens", "compl tok/q"),
             ("s_p50", "s/q p50"), ("s_p90", "s/q p90")]


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
            cells.append(fmt(v, digits=0 if k in ("prompt_tokens", "completion_tokens") else 2))
        rows.append(cells)
    return table(["config"] + [h for _, h in MAIN_COLS], rows)


def _by_config_table(recs: list[dict], configs, key: str, names: list[str]) -> list[str]:
    """One row per config with records: the mean of each of `names` in its summary's `key` (paths, stages)."""
    rows = []
    for c in configs:
        s = summarize(recs, config=c)
        if s:
            rows.append([c] + [fmt(s[key].get(n, 0.0)) for n in names])
    return table(["config"] + names, rows)


def _per_set_table(recs: list[dict], configs, key: str, pairs: list[str], variants: list[str]) -> list[str]:
    rows = []
    for c in configs:
        cells = [c]
        for p in pairs:
            for v in variants:
                s = summarize(recs, config=c, variant=v, pair=p)
                cells.append(f"{fmt(s.get(key))} (n={s['n']})" if s else "—")
        rows.append(cells)
    return table(["config"] + [f"{p} {v}" for p in pairs for v in variants], rows)


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
            f"{fmt(mean([r['f1'] for r in answered]))} vs LlamaIndex {fmt(mean([li[key(r)]['f1'] for r in answered]))}")
    if refused:
        line += (f"; on the {len(refused)} it refused, LlamaIndex's F1 was "
                 f"{fmt(mean([li[key(r)]['f1'] for r in refused]))} (ours 0 by definition)")
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
    L += table(["pair", "recall@5", "ctx recall", "answer F1", "model calls", "tokens/q", "prompt tok/q", "s/q p50",
                 "ingestion time"], rows) + [""]
    L += [f"Ingestion (all {len(data['docs'])} documents): ours {ours_ing:.1f} s, LlamaIndex "
          f"{fmt(li_ing, digits=1)} s. Per document: " + "; ".join(
              f"{k}: {v['chunks']} chunks {v['ingest_s']:.1f} s vs LlamaIndex {fmt(v['li_ingest_s'], digits=1)} s"
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
                          f"F1 {fmt(o['f1'])} vs {fmt(l['f1'])}; prompt tokens {o['prompt_tokens']:.0f} vs "
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
    L += table(["goal", "measured", "status"], goal_rows) + [""]
    L += _abstention_split(recs)
    n_answered = sum(data["answered"].values())
    if n_answered < 40:
        L += [f"Model-calling configs ran on {n_answered} question(s) in all: their figures are indicative only.", ""]

    # decision paths
    L += ["## Loop decision paths (share of questions; a question can take several)", ""]
    L += _by_config_table(recs, LOOP, "paths", PATHS) + [""]
    stops = Counter((r["config"], r.get("stopped_by")) for r in recs if r["config"] in LOOP and r.get("stopped_by"))
    if stops:
        L += ["Budget stops by budget: " + "; ".join(f"{c}: {b} ×{n}" for (c, b), n in sorted(stops.items()))
              + (" (`timeout_s` is the default 60 s per question: on a loaded machine the answer call can be cut)."
                 if any(b == "timeout_s" for _, b in stops) else "."), ""]

    # stages
    L += ["## Seconds per question by stage (mean, headings removed)", ""]
    L += _by_config_table(recs, ALL_CONFIGS, "stages", STAGES) + [""]

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
    configs = [c for c in ALL_CONFIGS if summarize(recs, config=c)]
    bottom = [0.0] * len(configs)
    for st in STAGES:
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
