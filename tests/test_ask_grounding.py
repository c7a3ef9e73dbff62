"""Grounding of answers: figures by value with magnitude and unit, the subject next to a figure, the
question's subject across languages, the prompt's own instruction lines, glued letter-digit names.

Each test is one class of wrong answer seen from the 0.5B generator with the right passage in context.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from rag.ask import AskOptions, Budget, ask
from rag.ask.cite import attribute
from rag.ask.config import Thresholds
from rag.ask.figures import belongs_to_other_subject, complete, figures_in, render
from rag.ask.post import strip_instructions
from rag.ask.terms import contains_entity, extract_key_terms
from rag.ask.types import ChunkSpan, Passage
from rag.text.fold import fold
from tests.ask_helpers import check_result, events_of
from tests.fakes import FakeDoc, FakeLLM, FakeRetriever

WALL = "长城全长8851.8公里，其中明长城为6259.6公里。"
SALES = "星云科技2023年营收1750亿元，同比增长12%。本文阅读量 3,021 次。"


def passage(text: str, n: int = 1) -> Passage:
    return Passage(1, "doc.txt", text, 0, len(text), [ChunkSpan(100 + n, 0, len(text), None)], 1.0, 1, n=n)


# ----------------------------------------------------------------------------- reading figures


@pytest.mark.parametrize("text, value, unit", [
    ("全长8851.8公里", Decimal("8851.8"), "公里"),
    ("营收1750亿元", Decimal("175000000000"), "元"),
    ("revenue of 175 billion dollars", Decimal("175000000000"), "dollar"),
    ("營收達3.5億美元", Decimal("350000000"), "美元"),
    ("1,024 bytes", Decimal("1024"), "byte"),
    ("占50%", Decimal("50"), "%"),
    ("1.5万人", Decimal("15000"), "人"),
])
def test_figures_carry_magnitude_and_unit(text, value, unit):
    (f,) = figures_in(text)
    assert f.value == value and f.unit == unit


def test_names_and_versions_are_not_values():
    assert figures_in("GPT-4 and ModelX3.5 run on x86_64") == []
    (v,) = figures_in("kernel 2.6.32")
    assert v.is_version and v.value == "2.6.32"


def test_chinese_numerals_only_where_asked():
    assert figures_in("支持三十年") == []
    (f,) = figures_in("支持三十年", chinese_numerals=True)
    assert f.value == 30 and f.unit == "年"


def test_render_in_the_answers_language():
    assert render(Decimal("175000000000"), "en") == "175 billion"
    assert render(Decimal("175000000000"), "zh-Hans") == "1750亿"
    assert render(Decimal("25000"), "en") == "25,000"


# ----------------------------------------------------------------------------- repairing truncated figures


def test_bare_number_gets_its_magnitude_from_the_passage():
    text, repairs = complete("营收为1750。", [(1, SALES)], "zh-Hans")
    assert text == "营收为1750亿元。" and repairs[0].passage == 1 and "magnitude added" in repairs[0].reason


def test_mistranslated_magnitude_is_corrected():
    text, repairs = complete("Revenue was 1750 billion yuan.", [(1, SALES)], "en")
    assert text == "Revenue was 175 billion yuan." and "magnitude corrected" in repairs[0].reason


def test_bare_number_at_sentence_end_gets_its_unit():
    assert complete("明长城全长6259.6。", [(1, WALL)], "zh-Hans")[0] == "明长城全长6259.6公里。"
    # a unit already there, or words after the number: left alone
    assert complete("明长城全长6259.6公里。", [(1, WALL)], "zh-Hans")[1] == []
    assert complete("It is 6259.6 long.", [(1, WALL)], "en")[1] == []


def test_a_correct_figure_is_never_changed():
    for answer, lang in [("营收1750亿元。", "zh-Hans"), ("Revenue was 175 billion yuan.", "en")]:
        assert complete(answer, [(1, SALES)], lang) == (answer, [])


def test_ambiguous_digits_are_not_repaired():
    """The same digits with two magnitudes: no way to tell which one the model copied."""
    text = "A 卖了12万台，B 卖了12亿元。"
    assert complete("卖了12。", [(1, text)], "zh-Hans") == ("卖了12。", [])


# ----------------------------------------------------------------------------- attribution by value


def test_truncated_figure_is_not_support():
    """'1750' is in the passage's digits but not its value (1750亿): attribution drops the sentence."""
    (ss,) = attribute("星云科技营收为1750元。", [passage(SALES)], Thresholds(), question="星云科技营收多少？")
    assert ss.dropped and "in no passage" in ss.reason


def test_same_value_in_other_words_is_support():
    (ss,) = attribute("星云科技营收为1750亿元。", [passage(SALES)], Thresholds(), question="星云科技营收多少？")
    assert ss.supported and not ss.dropped


def test_figure_of_another_subject_is_dropped():
    """Asked about 明长城, the model gave the figure the passage states for 长城 as a whole."""
    q = "明长城全长多少公里？"
    kt = extract_key_terms(q, "zh-Hans")
    markers = ["明长城"] if "明长城" not in kt.entities else kt.entities
    wrong, = attribute("明长城全长8851.8公里。", [passage(WALL)], Thresholds(), question=q, subjects=markers, markers=markers)
    right, = attribute("明长城全长6259.6公里。", [passage(WALL)], Thresholds(), question=q, subjects=markers, markers=markers)
    assert wrong.dropped and "another subject" in wrong.reason
    assert right.supported and not right.dropped


def test_numbers_in_the_question_mark_the_subject():
    text = "Debian 11 ships 59,000 packages, while Debian 12 ships 64,000 packages."
    assert belongs_to_other_subject(Decimal("59000"), text, ["debian", "12"]) == "12"
    assert belongs_to_other_subject(Decimal("64000"), text, ["debian", "12"]) is None


def test_cross_language_figure_needs_the_subject():
    """An English answer's figure matched a Chinese passage's view count: no support unless the passage
    names the question's subject."""
    p = passage(SALES)
    (orphan,) = attribute("Acme's revenue was 3,021 million.", [p], Thresholds(),
                          question="What was Acme's revenue?", subjects=["acme"])
    assert not orphan.supported
    (named,) = attribute("Its revenue was 175 billion yuan.", [p], Thresholds(),
                         question="What was Xingyun's revenue?", subjects=["星云科技"])
    assert named.supported and named.method == "number"


# ----------------------------------------------------------------------------- the prompt's own instructions


def test_instruction_lines_are_not_answers():
    assert strip_instructions("長城有多長？\n請用繁體中文回答。") == ("長城有多長？", ["請用繁體中文回答。"])
    assert strip_instructions("Answer in English. The pin priority is 1001.")[0] == "The pin priority is 1001."
    assert strip_instructions("根据上面的内容回答：明长城全长8851.8公里。")[0] == "明长城全长8851.8公里。"
    # the abstention sentence the system prompt quotes is an answer, and so is anything else
    for keep in ("The documents do not say.", "文档中没有提到。", "可以。", "Data."):
        assert strip_instructions(keep) == (keep, [])


def _loop(question: str, answer: str, text: str, lang_docs=None):
    doc = FakeDoc(1, "doc.txt", text, [(0, len(text))])
    r = FakeRetriever([doc], langs=lang_docs)
    llm = FakeLLM({"answer": answer, "rewrite": "x"})
    res = ask(question, r, llm, Budget(), AskOptions())
    check_result(res, llm, r, window=AskOptions().context_window, max_prompt_tokens=Budget().max_prompt_tokens)
    return res


PALACE = "故宮位於北京中軸線的中心，是明清兩代的皇家宮殿，佔地面積約72萬平方米。"


def test_question_echoed_with_the_script_instruction_abstains():
    q = "故宮佔地面積是多少？"
    res = _loop(q, q + "\n请用繁体中文回答。", PALACE)
    assert res.abstained and [c.purpose for c in res.calls] == ["answer"]
    post = events_of(res, "postprocess")[0]
    assert post["removed_instructions"]
    assert "restates the question" in events_of(res, "decision")[-1]["reason"]


def test_truncated_magnitude_is_repaired_in_the_loop():
    res = _loop("故宮佔地面積是多少？", "故宮佔地面積約72平方米。", PALACE)
    assert not res.abstained and "72萬平方米" in res.answer and res.citations
    assert events_of(res, "postprocess")[0]["figures"][0]["before"] == "72"


# ----------------------------------------------------------------------------- glued letter-digit names


def test_glued_name_in_a_chinese_question_is_one_entity():
    kt = extract_key_terms("星云科技的ModelX3.5模型参数量是多少？", "zh-Hans")
    assert "modelx3.5" in kt.entities and not any(" " in e for e in kt.entities)
    assert contains_entity("modelx3.5", fold("发布了ModelX3.5模型")) and contains_entity("modelx3.5", fold("ModelX 3.5"))
    assert not contains_entity("modelx3.5", fold("ModelX3 的后续版本计划于5月推出"))
    kt = extract_key_terms("CD-ROM和Qwen2.5-Coder-1.5B", "zh-Hans")
    assert {"cd-rom", "qwen2.5-coder-1.5b"} <= set(kt.entities)


def test_glued_name_question_is_answered_not_refused():
    text = "星云科技发布了ModelX3.5模型，参数量为70亿。"
    res = _loop("ModelX3.5的参数量是多少？", "ModelX3.5的参数量为70亿。", text)
    assert not res.abstained and res.citations


def test_dates_ranges_and_manual_sections_are_single_tokens():
    assert [f.value for f in figures_in("popcon 数据于 2023-02-02 下载，第一版 2001-2007")] == ["2023-02-02", "2001-2007"]
    assert figures_in("configure-debian 以 debconf(1) 作为后端") == []
    assert complete("2023-02-02", [(1, "数据于 2023-02-02 下载，共 2部")], "zh-Hans") == ("2023-02-02", [])


def test_owner_check_needs_both_figures_in_one_sentence():
    """A hard-wrapped line is not a sentence end, and a marker elsewhere in a long passage is no sign."""
    text = ("FAT16 partitions can be at most 2 GB.\n\nMicrosoft itself does not recommend to use FAT for drives or\n"
            "    partitions of over 200 MB. NTFS is fine.")
    assert belongs_to_other_subject(Decimal("200"), text, ["fat"]) is None
    wrapped = "长城全长8851.8公里，\n其中明长城为6259.6公里。"
    assert belongs_to_other_subject(Decimal("8851.8"), wrapped, ["明长城"]) == "明长城"


def test_restated_question_plus_a_figure_from_a_table_is_supported():
    """A table row states the figure without the question's wording: what the sentence adds is there."""
    table = "|www (http)    |80 |https        |443|\n|smtp (郵件)   |25 |ssmtp (smtps)|465|"
    (ss,) = attribute("smtps 的埠號是 465。", [passage(table)], Thresholds(), question="smtps 的埠號是多少？")
    assert ss.supported and "all in passage 1" in ss.reason
    (bad,) = attribute("smtps 的埠號是 587。", [passage(table)], Thresholds(), question="smtps 的埠號是多少？")
    assert not bad.supported and bad.dropped


def test_bare_numbers_in_a_row_do_not_compete():
    row = "|smtp (mail)          |25  |ssmtp (smtps)      |465 |"
    assert belongs_to_other_subject(Decimal("465"), row, ["smtp", "smtps"]) is None
    assert belongs_to_other_subject(Decimal("2021"), "As of Debian 11 Bullseye (2021), Debian uses cgroup v2.", ["debian"]) is None


def test_a_caption_is_not_an_answer():
    from rag.ask.post import strip_captions

    assert strip_captions("表格 2.4.") == ("", ["表格 2.4."])
    assert strip_captions("Table 3.2. The port is 465.")[0] == "The port is 465."
    assert strip_captions("+-----+\n| 軟體包 | 大小 |")[0] == "| 軟體包 | 大小 |"
    for keep in ("明长城全长8851.8公里。", "第 3 章", "Use table 2 of the manual."):
        assert strip_captions(keep) == (keep, [])
    table = "表格 2.4. 架構與軟體包數\n|amd64|68980|"
    res = _loop("amd64 架構目前有多少個可用的軟體包？", "表格 2.4.", table)
    assert res.abstained and "caption" in events_of(res, "decision")[-1]["reason"]


# ----------------------------------------------------------------------------- repairs, spellings and units


@pytest.mark.parametrize("passage_text, answer", [
    ("The tower's staircase has 1,204 steps from the crypt to the bell.", "The staircase has 1,204."),
    ("The orchard sold 340 apples on Saturday.", "It sold 340."),
    ("The mill was built in 1743 beside the river.", "It was built in 1743."),
])
def test_a_repair_never_takes_the_next_word_for_a_unit(passage_text, answer):
    assert complete(answer, [(1, passage_text)], "en") == (answer, [])


def test_a_unit_is_completed_as_the_passage_writes_it():
    text, repairs = complete("The Ming wall is 6259.6.", [(1, "The Ming wall is 6259.6 kilometres long.")], "en")
    assert text == "The Ming wall is 6259.6 kilometres." and repairs[0].after == "6259.6 kilometres"


@pytest.mark.parametrize("answer, passage_text, question", [
    ("The dish is 2.4 meters in diameter.", "The radio dish is 2.4 metres in diameter and turns once an hour.",
     "How wide is the dish?"),
    ("The canal is 12 km long.", "The canal is 12 kilometres long and has four locks.", "How long is the canal?"),
    ("明长城全长6259.6千米。", WALL, "明长城有多长？"),
])
def test_spelling_variants_and_unit_synonyms_are_the_same_word(answer, passage_text, question):
    (ss,) = attribute(answer, [passage(passage_text)], Thresholds(), question=question)
    assert ss.supported, ss.reason


def test_a_repaired_figure_is_never_the_support():
    """An invented '514 million' became '514' from a view count (repair), and then the rule that accepts
    a restated question plus a figure would have accepted it: a repair must not create support."""
    header = "星云科技发布年度报告。浏览量 514"
    text, repairs = complete("Acme's revenue in 2023 was 514 million.", [(1, header)], "en")
    assert repairs and "514 million" not in text
    (ss,) = attribute(text, [passage(header)], Thresholds(), question="What was Acme's revenue in 2023?",
                      subjects=["acme"], repaired=[r.after for r in repairs])
    assert not ss.supported
