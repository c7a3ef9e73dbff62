"""`rag bench qa`: the FAQ sets parse with gold spans, metrics behave, and a tiny quick run completes.

The end-to-end run loads the default models and needs the `bench` extra (LlamaIndex, matplotlib) and
the Debian packages `debian-faq` and `debian-faq-zh-cn`: a missing one FAILS the test (CI installs
them), it is never skipped.
"""

from __future__ import annotations

import json
import math

import pytest

from rag_bench.eval import faq
from rag_bench.eval.metrics import covered, first_hit_rank, rouge_l, token_f1


def test_faq_packages_installed():
    missing = faq.missing_packages(["en", "zh"])
    assert not missing, f"install the Debian package(s) {missing} (apt-get install {' '.join(missing)})"


@pytest.fixture(scope="module")
def faqs():
    return {l: faq.load(l) for l in ("en", "zh")}


def test_faq_entries_pair_up(faqs):
    en, zh = faqs["en"], faqs["zh"]
    for f in (en, zh):
        assert len(f.entries) > 100
        assert sum(e.is_question for e in f.entries) > 100
        assert "\u00a0" not in "".join(e.question for e in f.entries)
    assert [e.number for e in en.entries] == [e.number for e in zh.entries]
    by = en.by_number()
    assert by["1.2"].question == "What is Debian GNU/Linux?"
    assert by["1.5"].question.endswith("Why should I choose Debian over some other distribution?")  # wrapped heading
    assert zh.by_number()["1.2"].question == "什么是 Debian GNU/Linux？"
    for item in faq.qa_items(en, zh)[:5]:
        assert item.gold_answer and item.question_lang == "en" and item.doc_lang == "zh"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_gold_spans_in_both_texts(faqs, lang):
    from ingest.parsers import parse_document
    from rag.settings import Settings

    f = faqs[lang]
    with_body = [e for e in f.entries if e.body.strip()]
    for e in with_body:  # headings are gone from the headings-removed text
        assert f"\n{e.number}.\u00a0" not in f.noheadings
    for text in (f.shipped, f.noheadings, parse_document(f.noheadings.encode(), "faq.txt", Settings()).text):
        spans = faq.gold_spans(text, f.entries)
        assert len(spans) >= 0.98 * len(with_body)
        ordered = [spans[e.number] for e in with_body if e.number in spans]
        assert all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:]))  # in order, disjoint
        for e in with_body[:20]:
            if e.number in spans:
                s, t = spans[e.number]
                assert "".join(text[s:t].split())[:20] == "".join(e.body.split())[:20]


def test_metrics():
    assert token_f1("Debian is a distribution", "debian is a distribution", "en") == 1.0
    assert token_f1("", "x", "en") == 0.0
    assert 0 < rouge_l("是一个发行版", "Debian 是 Linux 的一个发行版", "zh") < 1
    assert covered((0, 10), [(0, 5), (3, 8)]) == 0.8
    assert first_hit_rank([(1, 0, 5), (2, 0, 50), (1, 40, 60)], 1, (50, 70)) == 3


def test_quick_bench_runs(tmp_path, models_dir, monkeypatch):
    """`rag bench qa --quick --lang en` with an even smaller limit: completes, writes the report, every rate in [0, 1]."""
    from typer.testing import CliRunner

    from rag_cli import app
    from rag_bench.eval import llama

    ok, why = llama.available()
    assert ok, why  # the bench extra must be installed: fail, never skip
    monkeypatch.setenv("RAG_MODEL_CACHE_DIR", str(models_dir))
    # The harness, not the default model, is under test: the 0.5B keeps LlamaIndex's 2,000-token prompts
    # cheap (the default 1.5B is asked in tests/test_llamacpp.py).
    monkeypatch.setenv("RAG_GENERATOR", "qwen2.5-coder-0.5b-instruct")
    out = tmp_path / "reports"
    res = CliRunner().invoke(app, ["bench", "qa", "--quick", "--lang", "en", "--limit", "3", "--answer-n", "1",
                                   "--out-dir", str(out)])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "R@5" in res.output
    md = list(out.glob("qa-*-quick.md"))
    assert len(md) == 1 and len(list(out.glob("*.png"))) == 2
    assert "questions our loop answered: ours" in md[0].read_text()
    data = json.loads(next(out.glob("qa-*-quick.json")).read_text())
    from rag_bench.qa import ALL_CONFIGS, RATE_KEYS

    assert {r["config"] for r in data["records"]} == set(ALL_CONFIGS)
    for r in data["records"]:
        for k in RATE_KEYS:
            v = r.get(k)
            if v is not None:
                assert 0.0 <= v <= 1.0 and not math.isnan(v), (r["config"], k, v)
        assert r["model_calls"] >= 0 and r["prompt_tokens"] >= 0 and r["seconds"] >= 0
    for c in ("loop", "llamaindex", "li-fusion"):
        assert any(r["config"] == c and r["model_calls"] >= 1 for r in data["records"]), c
    answered = {(r["set"], r["number"]) for r in data["records"] if r["config"] == "loop"}
    for c in ("hybrid+expand", "loop-force-rewrite", "llamaindex", "li-fusion"):
        assert {(r["set"], r["number"]) for r in data["records"] if r["config"] == c} == answered, c
    assert sum(data["answered"].values()) == len(answered)


def test_spread_order_prefixes_cover_the_list():
    from rag_bench.sampling import spread_order as _spread_order

    for n in (1, 2, 3, 7, 147):
        items = list(range(n))
        order = _spread_order(items)
        assert sorted(order) == items
    order = _spread_order(list(range(100)))
    assert order[:3] == [50, 25, 75]
    assert {x // 25 for x in order[:8]} == {0, 1, 2, 3}
    shifted = _spread_order(list(range(100)), 0.618)
    assert sorted(shifted) == list(range(100)) and not set(shifted[:4]) & set(order[:4])


def test_answering_stops_at_the_deadline_with_every_config_on_the_same_questions(monkeypatch):
    """Control flow only (the real configs run in test_quick_bench_runs): each question goes through every
    config before the next; past the deadline no new question starts, but every set gets its first."""
    import time

    from rag_bench.qa import runner as qa

    calls = []

    def fake(config):
        def run(*args):
            qs, items = args[1], args[3]
            conf = args[4] if len(args) > 4 and isinstance(args[4], str) else config
            calls.append((conf, qs.name, items[0]))
            return [{"config": conf}]
        return run

    monkeypatch.setattr(qa, "run_loop", lambda rt, qs, doc, items, config, timer: fake(config)(rt, qs, doc, items))
    monkeypatch.setattr(qa, "run_li_answer", lambda lb, qs, doc, items, config: fake(config)(lb, qs, doc, items))
    sets = [qa.QSet(f"s{i}", "en", "en", "noheadings", list(range(10))) for i in range(2)]
    docs = {("en", "noheadings"): None}
    opts = qa.Options(answer_n=3)
    configs = len(qa.LOOP) + len(qa.LLAMA_ANSWER)

    records: list = []
    got = qa.run_answering(None, object(), sets, docs, opts, None, records, None, lambda m: None)
    assert got == {"s0": 3, "s1": 3} and len(records) == 6 * configs
    assert [c[0] for c in calls[:configs]] == [*qa.LOOP, *qa.LLAMA_ANSWER]
    assert len({c[2] for c in calls[:configs]}) == 1  # one question through every config first
    assert calls[0][2] != calls[configs][2]  # the second set starts on another entry

    calls.clear()
    got = qa.run_answering(None, None, sets, docs, opts, None, [], time.monotonic() - 1, lambda m: None)
    assert got == {"s0": 1, "s1": 1}  # past the deadline: only the first question of each set
    assert {c[0] for c in calls} == set(qa.LOOP)  # no LlamaIndex baseline given: ours only
