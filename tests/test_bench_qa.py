"""`rag bench qa`: the FAQ sets parse with gold spans, metrics behave, and a tiny quick run completes.

The end-to-end run loads the default models and needs the `bench` extra (LlamaIndex, matplotlib) and
the Debian packages `debian-faq` and `debian-faq-zh-cn`: a missing one FAILS the test (CI installs
them), it is never skipped.
"""

from __future__ import annotations

import json
import math

import pytest

from rag.eval import faq
from rag.eval.metrics import covered, first_hit_rank, rouge_l, token_f1


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

    from rag.cli import app
    from rag.eval import llama

    ok, why = llama.available()
    assert ok, why  # the bench extra must be installed: fail, never skip
    monkeypatch.setenv("RAG_MODEL_CACHE_DIR", str(models_dir))
    out = tmp_path / "reports"
    res = CliRunner().invoke(app, ["bench", "qa", "--quick", "--lang", "en", "--limit", "3", "--answer-n", "1",
                                   "--out-dir", str(out)])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "R@5" in res.output
    md = list(out.glob("qa-*-quick.md"))
    assert len(md) == 1 and len(list(out.glob("*.png"))) == 2
    data = json.loads(next(out.glob("qa-*-quick.json")).read_text())
    from rag.bench.qa import ALL_CONFIGS, RATE_KEYS

    assert {r["config"] for r in data["records"]} == set(ALL_CONFIGS)
    for r in data["records"]:
        for k in RATE_KEYS:
            v = r.get(k)
            if v is not None:
                assert 0.0 <= v <= 1.0 and not math.isnan(v), (r["config"], k, v)
        assert r["model_calls"] >= 0 and r["prompt_tokens"] >= 0 and r["seconds"] >= 0
    for c in ("loop", "llamaindex", "li-fusion"):
        assert any(r["config"] == c and r["model_calls"] >= 1 for r in data["records"]), c
