"""Units of the asking loop: language, key terms, evidence rules, chunk merging, post-processing, config."""

from __future__ import annotations

import pytest

from rag.ask import AskOptions, Budget, InvalidBudget, Thresholds
from rag.ask.cite import attribute, restates_question, split_sentences
from rag.ask.evidence import assess, checkable
from rag.ask.expand import end_cut_reason, merge_chunks, start_cut_reason
from rag.ask.loop import query_key
from rag.ask.pool import Pool
from rag.ask.post import is_abstention, strip_citation_markers, strip_links
from rag.ask.prompts import parse_judge, parse_rewrite
from rag.ask.terms import extract_key_terms
from rag.ask.types import Candidate, ChunkSpan, Passage
from rag.text.lang import detect_language


@pytest.mark.parametrize("text,lang", [
    ("明长城全长多少公里？", "zh-Hans"),
    ("明長城全長多少公里？", "zh-Hant"),
    ("故宮在哪裡？", "zh-Hant"),
    ("这里的里程", "zh-Hans"),  # 里 is also a Traditional character: phrase-aware conversion decides
    ("如何安装 Python 包", "zh-Hans"),
    ("What does 长城 mean?", "en"),
    ("How do I install a package?", "en"),
])
def test_detect_language(text, lang):
    assert detect_language(text) == lang


def test_key_terms_chinese():
    kt = extract_key_terms("明长城全长多少公里？", "zh-Hans")
    assert kt.terms == ["明长城", "全长", "公里"] and kt.numbers == []
    assert extract_key_terms("明長城全長多少公里？", "zh-Hant").terms == ["明长城", "全长", "公里"]  # folded
    kt = extract_key_terms("公司2019年的营收是多少？", "zh-Hans")
    assert kt.numbers == ["2019"] and "营收" in kt.terms and "多少" not in kt.terms


def test_key_terms_english():
    kt = extract_key_terms("How do I install a package?", "en")
    assert kt.entities == [] and kt.numbers == [] and set(kt.terms) == {"install", "packag"}
    kt = extract_key_terms('Who is the CEO of Acme Corp and what does "pip freeze" do in 2019?', "en")
    assert {"acme corp", "pip freeze"} <= set(kt.entities) and kt.numbers == ["2019"]
    assert extract_key_terms("What are the features of GPT-4?", "en").numbers == []  # a name, not a number


def _pooled(texts, dense=0.9):
    pool = Pool()
    cands = [Candidate(i, 1, "a", None, i, t, 0, len(t), dense_score=dense, dense_rank=i + 1, bm25_score=1.0,
                       bm25_rank=i + 1, fused_score=0.1) for i, t in enumerate(texts)]
    pool.add("q", cands)
    return pool


def test_no_over_abstention_on_ordinary_questions():
    th = Thresholds()
    pool = _pooled(["明长城东起鸭绿江，总长度8851.8公里。"])
    a = assess(pool.ranked()[0], key_terms=extract_key_terms("明长城全长多少公里？", "zh-Hans"), question_lang="zh-Hans",
               collection_langs={"zh"}, thresholds=th, agreements=pool.agreements)
    assert a.verdict != "absent" and a.signals["coverage"] == pytest.approx(2 / 3, abs=1e-3)
    pool = _pooled(["To add a package, run pip install name."])
    a = assess(pool.ranked()[0], key_terms=extract_key_terms("How do I install a package?", "en"), question_lang="en",
               collection_langs={"en"}, thresholds=th, agreements=pool.agreements)
    assert a.verdict == "sufficient"


def test_absent_entity_and_number():
    th = Thresholds()
    pool = _pooled(["Acme Corp was founded in 1990."])
    kt = extract_key_terms("What did Zorblax report in 2019?", "en")
    a = assess(pool.ranked()[0], key_terms=kt, question_lang="en", collection_langs={"en"}, thresholds=th, agreements=pool.agreements)
    assert a.verdict == "absent" and set(a.signals["missing_must"]) == {"zorblax", "2019"}
    # mixed collection: the English name may be translated, only the number is required
    a = assess(pool.ranked()[0], key_terms=kt, question_lang="en", collection_langs={"en", "zh"}, thresholds=th, agreements=pool.agreements)
    assert a.signals["missing_must"] == ["2019"] and a.signals["unchecked_names"] == ["zorblax"]
    # spelled-out small numbers count
    pool = _pooled(["The three main features are speed, safety and cost."])
    a = assess(pool.ranked()[0], key_terms=extract_key_terms("What are the 3 main features?", "en"), question_lang="en",
               collection_langs={"en"}, thresholds=th, agreements=pool.agreements)
    assert a.verdict != "absent"


def _missing(question: str, passage: str, lang: str = "en") -> list[str]:
    pool = _pooled([passage])
    a = assess(pool.ranked()[0], key_terms=extract_key_terms(question, lang), question_lang=lang,
               collection_langs={"en"}, thresholds=Thresholds(), agreements=pool.agreements)
    return a.signals["missing_must"]


def test_names_are_not_over_required():
    """Found on the Debian FAQ: answers that never repeat the question's wording were refused before any
    model call (CD-ROMs vs CD, Debian-based, one of several listed examples, an interjection, TeX quotes)."""
    cd = "Installing Debian from CD is straightforward: boot off a CD and reboot."
    assert _missing("How do I install Debian from CD-ROMs?", cd) == []
    assert _missing("How do I install Debian from Zorblax-ROMs?", "Debian installs from a network mirror.") == ["zorblax-roms"]
    assert _missing("How should I install a non-Debian program?", "Debian packages go in /usr; others in /usr/local.") == []
    assert _missing("Is it Zorblax-based?", "This is based on Debian.") == ["zorblax-based"]
    assert _missing("OK, now I know what Debian is... what is Linux?!", "Linux is a kernel; Debian uses it.") == []
    knoppix = "For example, Knoppix is a Linux distribution designed to be booted as a live CD."
    q = "I installed Knoppix/Linux Mint Debian Edition/Ubuntu/... on my hard disk. Now I have a problem. What should I do?"
    assert _missing(q, knoppix) == []
    assert set(_missing(q, "Ask on the Debian forums.")) == {"knoppix", "linux mint debian edition", "ubuntu"}
    assert _missing("What is the difference between Python and Zorblax?", "Python is a language.") == ["zorblax"]
    assert _missing("Where is a player for Flash (SWF)?", "Debian ships gnash and swfdec: two SWF players.") == []
    assert _missing("Flash（SWF）播放器在哪里？", "Debian ships gnash and swfdec: two SWF players.", "zh-Hans") == []
    kt = extract_key_terms("Why is `foo-data' not removed when I uninstall `foo'?", "en")
    assert [e for e in kt.entities if kt.entity_kinds[e] == "quoted"] == ["foo-data", "foo"]
    assert "t zorblax work when it" not in extract_key_terms("Why doesn't Zorblax work when it's raining?", "en").entities
    zh = extract_key_terms("为什么官方的稳定版的 CD-ROM 含有“frozen”？诸如 etch、lenny 之类的名字是什么？", "zh-Hans")
    assert "cd-rom" in zh.entities and "rom" not in zh.entities and "诸如" not in zh.entities
    assert ["etch", "lenny"] in zh.alternatives
    zh = extract_key_terms("我编译程序时为什么会出现“ld: cannot find -lfoo”错误？", "zh-Hans")
    assert zh.entities == ["ld: cannot find -lfoo"]


@pytest.mark.parametrize("answer,question,echo", [
    ("Debian 档案库中的那些目录都是干什么用的？", "Debian 档案库中的那些目录都是干什么用的？", True),
    ("覆盖软件包安装的文件，以使用一个不同的版本。", "如何覆盖软件包安装的文件，以使用一个不同的版本？", True),
    ("You asked me to install stable, but the hardware is not detected.", "You asked me to install stable, but the hardware is not detected. What should I do?", True),
    ("可以自动升级系统。", "可以自动升级系统吗？", False),  # a yes/no question: this is the answer
    ("Yes, I can automatically update the system.", "Can I automatically update the system?", False),
    ("The latest version of Debian is bullseye.", "What is the latest version of Debian?", False),
    ("Debian 的最新版本是 11。", "Debian 的最新版本是哪个？", False),
    ("明长城全长8851.8公里。", "明长城全长多少公里？", False),
])
def test_restates_question(answer, question, echo):
    assert restates_question(answer, question) is echo


def test_checkable():
    assert checkable("number", "en", {"zh", "en"})
    assert checkable("latin", "zh-Hans", {"zh", "en"}) and not checkable("latin", "en", {"zh", "en"})
    assert checkable("cjk", "zh-Hans", {"zh"}) and not checkable("cjk", "zh-Hans", {"zh", "en"})


@pytest.mark.parametrize("text,cut", [
    ("The steps are as follows:", True), ("安装步骤如下：", True), ("It includes", True),
    ("ends with a comma,", True), ("no punctuation at the end", True), ("全长8851.8公里，", True),
    ("A full sentence.", False), ("完整的句子。", False), ("他说：“好的。”", False),
])
def test_end_cut(text, cut):
    assert (end_cut_reason(text) is not None) == cut


@pytest.mark.parametrize("text,cut", [
    ("and then it stops.", True), ("But not always.", True), ("，而且很长。", True), ("而且很长。", True),
    ("但是没有。", True), ("lowercase start", True), ("Capital start.", False), ("长城很长。", False),
    ("并非如此。", False),
])
def test_start_cut(text, cut):
    assert (start_cut_reason(text) is not None) == cut


def _c(cid, doc, start, end, ordinal):
    return Candidate(cid, 1, "a", None, ordinal, doc[start:end], start, end)


def test_merge_overlapping_and_gapped_chunks():
    doc = "Alpha beta gamma. Delta epsilon zeta. Eta theta iota."
    a, b = _c(1, doc, 0, 25, 0), _c(2, doc, 18, 40, 1)
    text, spans, s, e = merge_chunks([b, a], {1})
    assert text == doc[0:40] and (s, e) == (0, 40)
    assert [(x.chunk_id, x.start, x.end, x.retrieved) for x in spans] == [(1, 0, 25, True), (2, 18, 40, False)]
    # a gap (whitespace trimmed at chunking): joined with one space for Latin text
    c = _c(3, doc, 38, 53, 2)
    text, _, _, _ = merge_chunks([_c(1, doc, 0, 17, 0), c], {1, 3})
    assert text == "Alpha beta gamma. Eta theta iota."
    # offsets that do not match the text: the textual overlap is removed instead
    x = Candidate(1, 1, "a", None, 0, "第一句话在这里结束了然后", 0, 99)
    y = Candidate(2, 1, "a", None, 1, "在这里结束了然后第二句。", 5, 200)
    assert merge_chunks([x, y], {1})[0] == "第一句话在这里结束了然后第二句。"


def test_strip_markers_and_links():
    t, removed = strip_citation_markers("长城很长[3]。它在北方【2】。See [1, 2] and [Document 4].")
    assert t == "长城很长。它在北方。See and." and len(removed) == 4
    allowed = "see https://ok.example/a for details"
    t, removed = strip_links(
        "Go to https://ok.example/a. Or http://bad.example/x, [click](https://bad.example/y) ![i](https://bad.example/i.png) "
        "<https://bad.example/z> [ok](https://ok.example/a)", allowed)
    assert "bad.example" not in t and "https://ok.example/a." in t and "click" in t and "[ok](https://ok.example/a)" in t
    assert len(removed) == 4


def test_abstention_detection():
    assert is_abstention("文件中沒有提到。") and is_abstention("The documents do not say.")
    assert is_abstention("根据资料无法回答这个问题") and not is_abstention("明长城全长8851.8公里。")


def test_parse_rewrite_and_judge():
    assert parse_rewrite("1. 明长城 长度\n2）长城 公里\n- \"Great Wall length\"\n英文搜索短语：\nEnglish: wall km") == [
        "明长城 长度", "长城 公里", "Great Wall length", "wall km"]
    assert parse_rewrite("长城长度、明长城、长城 公里") == ["长城长度", "明长城", "长城 公里"]
    assert parse_judge("能。") == "yes" and parse_judge("不能") == "no" and parse_judge("不完整") == "incomplete"
    assert parse_judge("YES") == "yes" and parse_judge("Incomplete.") == "incomplete" and parse_judge("maybe") is None


def test_query_key_dedupes_variants():
    assert query_key("明长城 全长？") == query_key("明長城全長") == query_key(" 明长城，全长 ")
    assert query_key("Items send-back deadline!") == query_key("items send back deadline")


def test_attribution_features():
    p = Passage(1, "a", "明长城全长8851.8公里，东起鸭绿江。秦始皇连接长城。", 0, 30, [ChunkSpan(7, 0, 30)], 1.0, 1, n=1)
    sup = attribute("明长城全长8851.8公里。明长城全长一万公里。它长9000公里。是的。", [p], Thresholds(),
                    question="明长城全长多少公里？")
    assert [s.supported for s in sup] == [True, False, False, None]
    assert sup[0].quote == "明长城全长8851.8公里，东起鸭绿江。" and sup[2].dropped
    assert "only question words" in sup[1].reason
    assert [(s, e) for s, e in split_sentences("A. B")] == [(0, 2), (3, 4)]


def test_budget_and_options_merge():
    b = Budget().merged({"max_model_calls": 1, "timeout_s": 5, "max_rounds": None})
    assert b == Budget(max_model_calls=1, timeout_s=5.0)
    assert Budget(max_model_calls=5).merged({}, ceiling=Budget(max_model_calls=3)).max_model_calls == 3
    with pytest.raises(InvalidBudget):
        Budget().merged({"max_model_calls": -1})
    with pytest.raises(InvalidBudget):
        Budget().merged({"bogus": 1})
    with pytest.raises(InvalidBudget):
        Budget(timeout_s=0)
    o = AskOptions().merged({"k": 4, "thresholds": {"dense_min": 0.5}})
    assert o.k == 4 and o.thresholds.dense_min == 0.5 and o.thresholds.coverage_low == 0.5
    assert AskOptions(thresholds={"dense_min": 0.4}).thresholds.dense_min == 0.4
    assert o.to_dict()["thresholds"]["dense_min"] == 0.5


def test_from_settings():
    from rag.settings import Settings

    s = Settings(max_model_calls=2, context_window=1024, max_answer_tokens=100)
    assert Budget.from_settings(s).max_model_calls == 2
    o = AskOptions.from_settings(s, k=5)
    assert (o.context_window, o.max_answer_tokens, o.k) == (1024, 100, 5)


@pytest.mark.parametrize("text, kept", [
    ("The author says that prompt injection is a risk that", ""),
    ("Chat", ""),
    ("明长城全长8851.8公里。东起", "明长城全长8851.8公里。"),
    ("It is 5 days. It", "It is 5 days. "),
    ("It is 3.14.", "It is 3.14."),
    ("He said \"yes.\"", "He said \"yes.\""),
    ("Steps:\n1. Install foo\n2. Run", "Steps:\n1. Install foo\n"),
    ("第一步：安装。\n2、运行", "第一步：安装。\n"),
    ("Line one\n", "Line one\n"),
])
def test_unfinished_tail_of_a_cut_answer(text, kept):
    from rag.ask.cite import unfinished_tail

    assert text[: unfinished_tail(text)] == kept
