"""The factoid accuracy set (rag_bench/eval/data/factoid.jsonl), its normalisation, and a smoke run of its runner."""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache

import pytest

from rag_bench.eval import factoid
from rag_bench.eval.factoid import is_correct, normalise

ITEMS = factoid.load_set()
MISSING = factoid.missing_packages(factoid.DOCS)
needs_docs = pytest.mark.skipif(bool(MISSING), reason=f"Debian packages not installed: {', '.join(MISSING)}")


@lru_cache(maxsize=None)
def parsed(doc: str) -> str:
    """The document's text as our parser produces it, whitespace removed (lines may be re-wrapped)."""
    from ingest.parsers import parse_document
    from rag.settings import Settings

    src = factoid.DOCS[doc]
    return factoid.squash(parse_document(factoid.doc_bytes(doc), src.filename, Settings()).text)


# ---------------------------------------------------------------- the set

def test_set_size_and_balance():
    ans = [i for i in ITEMS if i.answerable]
    una = [i for i in ITEMS if not i.answerable]
    assert len(ans) >= 150 and len(una) >= 20
    by_lang = Counter(i.lang for i in ans)
    zh = by_lang["zh-Hans"] + by_lang["zh-Hant"]
    assert abs(by_lang["en"] - zh) <= 0.15 * len(ans), by_lang  # about half each
    assert by_lang["zh-Hans"] >= 30 and by_lang["zh-Hant"] >= 30, by_lang
    assert {i.lang for i in una} == set(factoid.LANGS)


def test_items_well_formed():
    ids = [i.id for i in ITEMS]
    assert len(ids) == len(set(ids))
    for i in ITEMS:
        assert i.doc in factoid.DOCS and i.lang in factoid.LANGS, i.id
        assert factoid.DOCS[i.doc].lang.split("-")[0] == i.lang.split("-")[0], i.id  # asked in the document's language
        assert i.question.strip(), i.id
        if i.answerable:
            assert i.kind != "unanswerable" and i.evidence.strip() and not i.absent, i.id
            assert all(normalise(g) for g in i.gold), i.id
        else:
            assert i.kind == "unanswerable" and not i.evidence and i.absent, i.id


def test_questions_written_in_their_script():
    from rag.text.lang import detect_language

    for i in ITEMS:
        assert detect_language(i.question) == i.lang, (i.id, i.question)


def test_kinds_cover_numbers_names_dates_versions():
    kinds = Counter(i.kind for i in ITEMS if i.answerable)
    for k in ("number", "name", "date", "version", "path", "command"):
        assert kinds[k] >= 5, kinds


@needs_docs
def test_evidence_in_document_and_gold_in_evidence():
    for i in ITEMS:
        if not i.answerable:
            continue
        assert factoid.squash(i.evidence) in parsed(i.doc), f"{i.id}: evidence not in {i.doc}"
        assert any(is_correct(i.evidence, [g]) for g in i.gold), f"{i.id}: no gold key in the evidence"


@needs_docs
def test_unanswerable_subjects_absent_from_every_document():
    from rag.text.fold import fold

    texts = {d: fold(factoid.doc_text(d)) for d in factoid.DOCS}
    for i in ITEMS:
        for term in i.absent:
            for d, text in texts.items():
                assert fold(term) not in text, f"{i.id}: {term!r} occurs in {d}"


# ---------------------------------------------------------------- normalisation

@pytest.mark.parametrize("answer,gold", [
    ("The limit is 1,024 MiB.", "1024 MiB"),
    ("共有 ６ 個", "6"),
    ("系統有六個控制檯", "6"),
    ("有二十五个架构", "25"),
    ("约 1.5万 个软件包", "15000"),
    ("参数量为 1750亿", "175 billion"),
    ("一千七百五十亿个参数", "175000000000"),
    ("Released in April 2015.", "2015年4月"),
    ("發佈於 2023年2月2日", "2023-02-02"),
    ("days since Jan 1, 1970", "1970"),
    ("它的大小是 5.0 GiB", "5 GiB"),
    ("actual usage is 83MiB", "83 MiB"),
    ("軟體包 apt-file", "apt_file"),
    ("请安装 debmake-doc 软件包", "DEBMAKE-DOC"),
    ("每 2 秒鐘更新一次", "2 秒"),
    ("it is stored in /etc/papersize [2]", "/etc/papersize"),
])
def test_normalised_match(answer, gold):
    assert is_correct(answer, [gold])


@pytest.mark.parametrize("answer,gold", [
    ("Pin-Priority 100 [1]", "1"),  # a citation marker is not an answer
    ("about 1024 bytes", "10"),  # numbers match whole
    ("Debian 10 buster", "Debian 1"),
    ("uses s390", "s390x"),
    ("the bo release", "boot"),
    ("The maximum is 4 MiB", "4 GiB"),
    ("共有 1.5 个", "15000"),
    ("I don't know", ""),
])
def test_normalised_mismatch(answer, gold):
    assert not is_correct(answer, [gold] if gold else [])


def test_traditional_and_simplified_fold():
    assert normalise("軟體包維護者") == normalise("軟体包维护者")
    assert normalise("１２３ＡＢＣ") == "123 abc"


def test_score_definitions():
    recs = [
        {"lang": "en", "answerable": True, "abstained": False, "citations": 1, "correct": True},
        {"lang": "en", "answerable": True, "abstained": False, "citations": 2, "correct": False},  # confident wrong
        {"lang": "en", "answerable": True, "abstained": False, "citations": 0, "correct": False},  # wrong, uncited
        {"lang": "en", "answerable": True, "abstained": True, "citations": 0, "correct": False},  # false abstention
        {"lang": "zh-Hans", "answerable": False, "abstained": True, "citations": 0, "correct": False},
        {"lang": "zh-Hans", "answerable": False, "abstained": False, "citations": 1, "correct": False},  # confident wrong
    ]
    s = factoid.score(recs)
    assert s["accuracy"] == 1 / 4 and s["answered"] == 4
    assert s["confident_wrong"] == 2 and s["confident_wrong_rate"] == 2 / 4 and s["wrong_uncited"] == 1
    assert s["abstain_unanswerable"] == 1 / 2 and s["false_abstention"] == 1 / 4
    by = factoid.score_by_lang(recs)
    assert by["en"]["answerable"] == 4 and by["zh-Hans"]["unanswerable"] == 2 and "zh-Hant" not in by


def test_sample_spreads_over_set_and_languages():
    from rag_bench.factoid import select

    picked = select(ITEMS, limit=4, langs=factoid.LANGS)
    by_lang = Counter(i.lang for i in picked)
    assert set(by_lang) == set(factoid.LANGS) and all(n == 4 for n in by_lang.values())
    assert any(not i.answerable for i in picked)
    assert len({i.doc for i in picked}) >= 3


# ---------------------------------------------------------------- runner smoke test (small models)

SMOKE_DOC = """# Harbour notes

The harbour office opens at 07:30 and the ferry to Skerry Island leaves from pier 4.
The ferry carries at most 120 passengers and 14 cars on each crossing.
The crossing to Skerry Island takes 45 minutes in calm weather.
"""


def test_runner_smoke(small_settings, small_embedder_dir, small_generator_dir, tmp_path):
    from rag_bench import factoid as bench

    items = [
        factoid.Item("smoke-1", "en", "smoke", "How many passengers can the ferry carry?", ("120 passengers", "120"),
                     "number", "The ferry carries at most 120 passengers and 14 cars on each crossing."),
        factoid.Item("smoke-2", "en", "smoke", "How long does the crossing to Skerry Island take?", ("45 minutes",),
                     "number", "The crossing to Skerry Island takes 45 minutes in calm weather."),
        factoid.Item("smoke-3", "en", "smoke", "What is the wifi password of the Kubernetes cluster?", (),
                     "unanswerable", "", ("kubernetes",)),
    ]
    docs = {"smoke": ("smoke.md", SMOKE_DOC.encode())}
    opts = bench.Options(out_dir=tmp_path / "reports", data_dir=tmp_path / "state")
    data = bench.run(small_settings, opts, items=items, documents=docs, log=lambda m: None)
    recs = data["records"]
    assert sorted(r["id"] for r in recs) == ["smoke-1", "smoke-2", "smoke-3"]
    for r in recs:
        for k in ("answer", "abstained", "citations", "correct", "model_calls", "prompt_tokens",
                  "completion_tokens", "seconds", "lang", "answerable"):
            assert k in r, k
        assert r["seconds"] > 0 and r["model_calls"] >= 0
        if r["abstained"]:
            assert not r["correct"]
        assert r["correct"] == (r["answerable"] and not r["abstained"] and is_correct(r["answer"], r["gold"]))
    s = data["summary"]["all"]
    assert s["n"] == 3 and s["answerable"] == 2 and s["unanswerable"] == 1
    assert s["answered"] == sum(1 for r in recs if not r["abstained"])
    assert s["accuracy"] == sum(r["correct"] for r in recs) / 2
    assert data["models"]["generator"] == "smollm2-135m-instruct" and "runtime" in data["models"]
    assert data["docs"]["smoke"]["ingested"] is True
    md, js = bench.write_report(data, opts.out_dir)
    assert md.is_file() and json.loads(js.read_text())["summary"]["all"]["n"] == 3
    assert "accuracy" in bench.stdout_table(data)
    # a second run on the same data dir reuses the ingested document
    data2 = bench.run(small_settings, opts, items=items[:1], documents=docs, log=lambda m: None)
    assert data2["docs"]["smoke"]["ingested"] is False
    assert "accuracy" in "\n".join(bench.compare_tables(data, data2))
