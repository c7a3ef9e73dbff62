"""Control flow of the asking loop, with a scripted LLM and an in-memory bilingual retriever."""

from __future__ import annotations

import pytest

from rag.ask import AskOptions, Budget, ask
from rag.ask.loop import query_key
from tests.ask_helpers import check_result, events_of
from tests.fakes import INSTALL_EN, FakeClock, FakeLLM, corpus

OPT = AskOptions()


def run(question, llm, retriever=None, budget=None, options=None, **kw):
    retriever = retriever or corpus()
    budget = budget or Budget()
    options = options or OPT
    res = ask(question, retriever, llm, budget, options, **kw)
    check_result(res, llm, retriever, window=options.context_window, max_prompt_tokens=budget.max_prompt_tokens)
    return res, retriever


def test_sufficient_evidence_costs_exactly_one_call():
    llm = FakeLLM({"answer": "明长城全长8851.8公里[3]。"})
    res, r = run("明长城全长多少公里？", llm)
    assert res.usage["model_calls"] == 1 and [c.purpose for c in res.calls] == ["answer"]
    assert not res.abstained and res.stopped_by is None
    assert res.answer == "明长城全长8851.8公里。[1]"  # the model's [3] is stripped, the service cites
    assert res.citations[0].chunk_ids == [102] and "8851.8" in res.citations[0].quote
    decision = next(e for e in events_of(res, "decision") if e["step"] == "evidence")
    assert decision["verdict"] == "sufficient"
    assert "3 of 3 key terms" in decision["reason"] and "-> answer" in decision["reason"]
    assert r.queries == ["明长城全长多少公里？"]
    assert res.support == {"sentences": 1, "supported": 1, "dropped": 0, "method": "lexical"}


def test_weak_evidence_rewrites_then_answers_with_two_calls():
    llm = FakeLLM({
        "rewrite": "1. refund policy\n2. return period days",
        "answer": "You can return items within 30 days of purchase with a receipt.",
    })
    res, r = run("How long do customers have to send back items?", llm, retriever=corpus(langs={"en"}))
    assert [c.purpose for c in res.calls] == ["rewrite", "answer"]
    assert r.queries == ["How long do customers have to send back items?", "refund policy", "return period days"]
    first, second = [e for e in events_of(res, "decision") if e["step"] == "evidence"]
    assert first["verdict"] == "weak" and "-> rewrite" in first["reason"] and "0 of" in first["reason"]
    assert second["verdict"] == "sufficient" and "'refund policy' covers 1.00" in second["reason"]
    assert not res.abstained and res.stopped_by is None
    assert res.citations and res.citations[0].filename == "refund.txt"
    assert res.answer.endswith("[1]")
    # the rewrite prompt and its raw output are in the trace
    rw = next(e for e in events_of(res, "model_call") if e["purpose"] == "rewrite")
    assert "search phrases" in rw["messages"][0]["content"] and rw["output"].startswith("1. refund")
    assert "How long do customers" in rw["prompt"]  # the rendered prompt


def test_mixed_collection_first_rewrite_is_a_translation():
    llm = FakeLLM({"rewrite": ["退货 期限", "refund policy"], "answer": "I am not sure."})
    res, r = run("How long do customers have to send back items?", llm, budget=Budget(max_model_calls=4, max_rounds=3))
    prompts_sent = [c["messages"][0]["content"] for c in llm.calls if c["purpose"] == "rewrite"]
    assert prompts_sent[0].startswith("把下面的问题翻译成中文")
    assert prompts_sent[1].startswith("Rewrite the question below")  # then keywords in the question's language
    modes = [e["mode"] for e in events_of(res, "rewrite")]
    assert modes == ["translate", "keywords"]


def test_never_reissues_a_query():
    q = "How long do customers have to send back items?"
    llm = FakeLLM({
        "rewrite": ["items send back deadline", f"Items send-back deadline!\n{q}"],
        "answer": "I am not sure.",
    })
    res, r = run(q, llm, budget=Budget(max_model_calls=4, max_rounds=3))
    keys = [query_key(x) for x in r.queries]
    assert len(keys) == len(set(keys)) == 2
    skipped = events_of(res, "query_skipped")
    assert {e["same_as"] for e in skipped} == {"items send back deadline", q}
    assert all(e["reason"] == "already issued" for e in skipped)
    stop = [e for e in events_of(res, "decision") if e["step"] == "rewrite" and e["verdict"] == "stop"]
    assert stop and "no query that was not already issued" in stop[0]["reason"]
    assert [c.purpose for c in res.calls] == ["rewrite", "rewrite", "answer"]


def test_cut_off_chunk_is_expanded_and_overlap_removed():
    llm = FakeLLM({"answer": "Create a virtual environment, activate it, and run pip install with the package name."})
    opts = AskOptions(max_passages=1, thresholds={"min_passages": 1})
    res, r = run("How do I install a package?", llm, options=opts)
    ctx = res.trace["context"]
    assert len(ctx) == 1
    p = ctx[0]
    assert p["chunk_ids"] == [105, 106] and p["neighbour_ids"] == [106]
    i1, i3 = INSTALL_EN.index("To install"), INSTALL_EN.index("Upgrading")
    assert p["text"] == INSTALL_EN[i1:i3]  # chunk 106 repeats 10 characters of 105: not twice
    exp = [e for e in events_of(res, "expansion") if e["added"]]
    assert exp[0]["chunk_id"] == 106 and "colon" in exp[0]["reason"]
    assert 106 in r.fetched
    # the quote is one sentence running across both chunks: both are cited, page of the first
    assert res.citations[0].chunk_ids == [105, 106] and res.citations[0].page == 1


def test_expansion_stops_before_the_budget_overflows():
    llm = FakeLLM({"answer": "To install a package, follow these steps."})
    bare = llm.prompt_tokens(__import__("rag.ask.prompts", fromlist=["x"]).answer_messages([], "How do I install a package?", "en"))
    opts = AskOptions(max_passages=1, thresholds={"min_passages": 1}, context_window=bare + 256 + 30)
    res, _ = run("How do I install a package?", llm, options=opts)
    skipped = [e for e in events_of(res, "expansion") if not e["added"]]
    assert skipped and "would exceed" in skipped[0]["note"]
    assert res.trace["context"][0]["chunk_ids"] == [105]


def test_unanswerable_number_absent_abstains_with_zero_calls():
    llm = FakeLLM({})
    res, _ = run("2031年公司的营收是多少？", llm)
    assert res.abstained and res.answer == "文档中没有提到。" and res.usage["model_calls"] == 0
    ab = [e for e in events_of(res, "decision") if e.get("verdict") == "absent"][0]
    assert "'2031'" in ab["reason"] and "-> abstain" in ab["reason"]


def test_unanswerable_entity_absent_in_english_collection_zero_calls():
    llm = FakeLLM({})
    r = corpus(langs={"en"})
    res, _ = run("Who founded Zorblax Industries?", llm, retriever=r)
    assert res.abstained and res.answer == "The documents do not say." and res.usage["model_calls"] == 0


def test_traditional_abstention_text():
    res, _ = run("2031年故宮的遊客有多少？", FakeLLM({}))
    assert res.abstained and res.answer == "文件中沒有提到。" and res.language == "zh-Hant"


def test_invented_answer_is_replaced_by_plain_abstention():
    llm = FakeLLM({
        "rewrite": "telephone inventor",
        "answer": "Alexander Graham Bell invented the telephone in 1876.",
    })
    res, _ = run("Who invented the telephone?", llm)
    assert res.abstained and res.answer == "The documents do not say." and res.citations == []
    assert res.usage["model_calls"] == 2
    att = events_of(res, "attribution")[0]["sentences"]
    assert att[0]["dropped"] and "1876" in att[0]["reason"]


def test_model_abstention_is_plain_and_in_question_script():
    llm = FakeLLM({"answer": "根据资料，文档中没有提到这个问题的答案。"})
    res, _ = run("故宮的屋頂是什麼顏色？", llm, options=AskOptions(rewrite=False))
    assert res.abstained and res.answer == "文件中沒有提到。"


def test_budget_one_call_means_no_rewrite_and_names_the_budget():
    llm = FakeLLM({"answer": "Returns are accepted within 30 days."})
    res, _ = run("How long do customers have to send back items?", llm, budget=Budget(max_model_calls=1))
    assert [c.purpose for c in res.calls] == ["answer"]
    assert res.stopped_by == "max_model_calls"
    b = events_of(res, "budget")[0]
    assert b["budget"] == "max_model_calls" and "no call for the answer" in b["reason"]


def test_budget_zero_calls_retrieval_only():
    res, _ = run("明长城全长多少公里？", FakeLLM({}), budget=Budget(max_model_calls=0))
    assert res.abstained and res.stopped_by == "max_model_calls" and res.usage["model_calls"] == 0
    assert events_of(res, "selection")[0]["selected"]


def test_max_rounds_budget_named_when_it_stops_rewriting():
    llm = FakeLLM({"answer": "I am not sure."})
    res, _ = run("How long do customers have to send back items?", llm, budget=Budget(max_rounds=1))
    assert res.stopped_by == "max_rounds" and [c.purpose for c in res.calls] == ["answer"]


def test_rewrite_off_is_not_a_budget_stop():
    llm = FakeLLM({"answer": "I am not sure."})
    res, _ = run("How long do customers have to send back items?", llm, options=AskOptions(rewrite=False))
    assert res.stopped_by is None and [c.purpose for c in res.calls] == ["answer"]


def test_force_rewrite_rewrites_even_when_evidence_suffices():
    llm = FakeLLM({"rewrite": "明长城 长度\nGreat Wall length", "answer": "明长城全长8851.8公里。"})
    res, r = run("明长城全长多少公里？", llm, options=AskOptions(force_rewrite=True))
    assert [c.purpose for c in res.calls] == ["rewrite", "answer"]
    assert r.queries == ["明长城全长多少公里？", "明长城 长度", "Great Wall length"]
    assert not res.abstained


def test_timeout_reserves_time_for_the_answer():
    clock = FakeClock()
    llm = FakeLLM({"rewrite": ["items send back deadline", "customer item deadline"], "answer": "I am not sure."},
                  clock=clock, seconds={"rewrite": 40.0, "answer": 1.0})
    res, _ = run("How long do customers have to send back items?", llm, clock=clock,
                 budget=Budget(max_model_calls=4, max_rounds=3, timeout_s=60))
    assert [c.purpose for c in res.calls] == ["rewrite", "answer"]
    assert res.stopped_by == "timeout_s"
    assert "reserved for the answer" in events_of(res, "budget")[0]["reason"]


def test_timeout_slow_search_blocks_rewrite():
    clock = FakeClock()
    r = corpus(clock=clock, search_seconds=31.0)
    llm = FakeLLM({"answer": "I am not sure."}, clock=clock)
    res, _ = run("How long do customers have to send back items?", llm, retriever=r, clock=clock, budget=Budget(timeout_s=60))
    assert res.stopped_by == "timeout_s" and [c.purpose for c in res.calls] == ["answer"]


def test_timeout_before_answer_abstains_without_call():
    clock = FakeClock()
    r = corpus(clock=clock, search_seconds=61.0)
    res, _ = run("明长城全长多少公里？", FakeLLM({}, clock=clock), retriever=r, clock=clock, budget=Budget(timeout_s=60))
    assert res.abstained and res.stopped_by == "timeout_s" and res.usage["model_calls"] == 0


def test_timeout_cuts_the_answer():
    clock = FakeClock()
    llm = FakeLLM({"answer": "明长城全长8851.8公里，东起鸭绿江，西至嘉峪关。"}, clock=clock, seconds={"answer": 100.0})
    res, _ = run("明长城全长多少公里？", llm, clock=clock, budget=Budget(timeout_s=60))
    assert res.stopped_by == "timeout_s" and res.calls[0].stopped_by == "deadline"


def _decision(res, verdict):
    return [e for e in events_of(res, "decision") if e.get("step") == "support" and e["verdict"] == verdict]


def test_an_uncut_answer_is_complete():
    res, _ = run("明长城全长多少公里？", FakeLLM({"answer": "明长城全长8851.8公里[3]。"}))
    assert res.complete and res.incomplete_reason is None and not _decision(res, "cut")
    done = events_of(res, "done")[0]
    assert done["complete"] is True and "incomplete_reason" not in done


def test_an_answer_cut_at_the_deadline_keeps_whole_supported_sentences_and_says_so():
    # The slow generator is cut at the deadline halfway through its text: the first sentence is whole and
    # supported, the second is an invented whole sentence, the third is unfinished.
    clock = FakeClock()
    text = "明长城全长8851.8公里。长城是月球上看得见的。东起鸭绿江，西至嘉峪关，" + "途经十个省份和许多地方的关口与城墙。" * 2
    llm = FakeLLM({"answer": text}, clock=clock, seconds={"answer": 100.0})
    res, _ = run("明长城全长多少公里？", llm, clock=clock, budget=Budget(timeout_s=60))
    assert res.calls[0].stopped_by == "deadline" and res.stopped_by == "timeout_s"
    assert not res.complete and res.incomplete_reason == "timeout_s" and not res.abstained
    assert "8851.8" in res.answer and "月球" not in res.answer and "东起" not in res.answer
    assert res.citations
    cut = _decision(res, "cut")[0]
    assert "长城是月球上看得见的。" in cut["sentences"] and any("东起鸭绿江" in s for s in cut["sentences"])
    for kind in ("answer", "done"):
        ev = events_of(res, kind)[0]
        assert ev["complete"] is False and ev["incomplete_reason"] == "timeout_s"


def test_an_answer_cut_before_any_whole_sentence_abstains_as_incomplete():
    clock = FakeClock()
    llm = FakeLLM({"answer": "明长城全长8851.8公里，东起鸭绿江，西至嘉峪关。"}, clock=clock, seconds={"answer": 100.0})
    res, _ = run("明长城全长多少公里？", llm, clock=clock, budget=Budget(timeout_s=60))
    assert res.abstained and not res.complete and res.incomplete_reason == "timeout_s"
    assert "before its first sentence ended" in events_of(res, "decision")[-1]["reason"]


def test_an_answer_cut_by_its_token_limit_drops_its_unfinished_sentence():
    text = "Returns are allowed within 30 days of purchase with a receipt. " + "Items must be unused and in their original packaging " * 5
    llm = FakeLLM({"answer": text})
    res, _ = run("How many days do I have for a refund?", llm, options=AskOptions(max_answer_tokens=24, rewrite=False))
    assert res.calls[-1].stopped_by == "max_tokens"
    assert not res.complete and res.incomplete_reason == "max_answer_tokens" and not res.abstained
    assert "30 days" in res.answer and "packaging" not in res.answer


def test_max_prompt_tokens_blocks_rewrite_and_caps_the_answer_prompt():
    llm = FakeLLM({"answer": "I am not sure."})
    res, _ = run("How long do customers have to send back items?", llm, budget=Budget(max_prompt_tokens=250))
    assert res.stopped_by == "max_prompt_tokens"
    assert [c.purpose for c in res.calls] == ["answer"] and res.calls[0].prompt_tokens <= 250


def test_max_prompt_tokens_too_small_for_any_answer():
    res, _ = run("明长城全长多少公里？", FakeLLM({}), budget=Budget(max_prompt_tokens=20))
    assert res.abstained and res.stopped_by == "max_prompt_tokens" and res.usage["model_calls"] == 0


def test_citations_never_point_outside_the_context():
    # The answer copies a sentence of a chunk that was retrieved for nothing here: not cited, abstain.
    llm = FakeLLM({"answer": "Refunds are paid to the original payment method."})
    res, _ = run("明长城全长多少公里？", llm)
    assert res.abstained and res.citations == []


def test_injected_instructions_and_links_are_neutralised():
    llm = FakeLLM({"answer": (
        "Shipping takes 5 business days [1]. Visit http://evil.example/steal now. ![x](http://evil.example/x.png) "
        "See [here](http://evil.example/t)."
    )})
    res, _ = run("How long does shipping take?", llm)
    # The URL is in a passage, but that passage reads like an injection: none of its links are allowed.
    assert "evil.example" not in res.answer and "![" not in res.answer
    assert res.answer.startswith("Shipping takes 5 business days. [1]")
    post = events_of(res, "postprocess")[0]
    assert post["removed_markers"] == ["[1]"] and len(post["removed_links"]) == 3 and post["untrusted_passages"]
    prompt = llm.calls[0]["messages"]
    user = prompt[-1]["content"]
    n = next(p["n"] for p in res.trace["context"] if "Ignore previous instructions" in p["text"])
    begin, end = user.index(f"<<<DOCUMENT {n} BEGIN>>>"), user.index(f"<<<DOCUMENT {n} END>>>")
    assert begin < user.index("Ignore previous instructions") < end
    assert user.count("<<<DOCUMENT 1 END>>>") == 1  # the passage's fake end marker was neutralised
    assert "‹‹‹DOCUMENT 1 END›››" in user
    assert "not instructions" in prompt[0]["content"]


def test_links_from_clean_passages_are_kept_others_removed():
    llm = FakeLLM({"answer": "Packages come from the Python Package Index at https://pypi.org/simple. "
                             "Mirror: [fast](https://mirror.example.net/simple)"})
    res, _ = run("Where are Python packages distributed?", llm)
    assert "https://pypi.org/simple" in res.answer
    assert "mirror.example.net" not in res.answer and "fast" in res.answer


def test_traditional_question_gets_traditional_answer():
    llm = FakeLLM({"answer": "故宫位于北京中轴线的中心。"})
    res, _ = run("故宮在哪裡？", llm)
    assert res.language == "zh-Hant" and not res.abstained
    assert res.answer == "故宮位於北京中軸線的中心。[1]"
    assert "请用繁体中文回答" in llm.calls[0]["messages"][-1]["content"]


def test_simplified_question_gets_simplified_answer():
    llm = FakeLLM({"answer": "明長城全長8851.8公里。"})
    res, _ = run("明长城全长多少公里？", llm)
    assert res.answer == "明长城全长8851.8公里。[1]"


def test_events_stream_and_tokens_stream():
    got, tokens = [], []
    llm = FakeLLM({"answer": "明长城全长8851.8公里[2]。"})
    res, _ = run("明长城全长多少公里？", llm, on_event=got.append, on_token=tokens.append)
    assert got == res.trace["events"]
    assert "".join(tokens) == "明长城全长8851.8公里[2]。"  # raw model output; res.answer is authoritative
    assert [e["type"] for e in got].index("context") < [e["type"] for e in got].index("model_call")


def test_cross_language_question_rewrites_into_the_other_language():
    llm = FakeLLM({"rewrite": "明长城 全长", "answer": "The Ming Great Wall is 8851.8 km long."})
    res, r = run("How long is the Ming Great Wall?", llm)
    assert "明长城 全长" in r.queries
    ev = [e for e in events_of(res, "decision") if e["step"] == "evidence"]
    assert ev[0]["verdict"] == "weak" and ev[-1]["verdict"] == "sufficient"
    assert ev[0]["signals"]["unchecked_names"]  # "great wall" is not required verbatim in a mixed collection
    # English answer from a Chinese passage: the number the question did not contain carries the support
    assert not res.abstained and res.support["method"] == "number"
    assert res.citations[0].chunk_ids == [102] and "8851.8" in res.citations[0].quote


def test_cross_language_answer_without_numbers_is_unverified_not_refused():
    llm = FakeLLM({"rewrite": "明长城 全长", "answer": "It runs from the Yalu River to Jiayu Pass."})
    res, _ = run("How long is the Ming Great Wall?", llm)
    # word overlap cannot check a translation: the answer is returned uncited
    assert not res.abstained and res.citations == [] and res.support["method"] == "unverified"


def test_cross_language_context_judged_as_a_whole_not_by_its_top_passage():
    """Found on the Chinese Debian FAQ: the top passage was a list of paths and commands, which reads as
    English on its own, so an English answer from Chinese context was refused instead of returned uncited."""
    from rag.text.lang import detect_language
    from tests.fakes import FakeDoc, FakeRetriever

    cmds = "Debian conffile: /etc/apt/apt.conf /etc/dpkg/dpkg.cfg dpkg --force-confold conffile conffile. "
    zh = "Debian conffile 是软件包管理系统在升级该软件包时不会覆盖的配置文件（通常在 /etc 中）的列表。这确保了本地修改会被保留。"
    other = "这一段讲的是别的事情：天气很好，我们去公园散步吧。"
    doc = cmds + other + zh
    cuts = [(0, len(cmds)), (len(cmds), len(cmds) + len(other)), (len(cmds) + len(other), len(doc))]
    r = FakeRetriever([FakeDoc(1, "faq.zh.txt", doc, cuts)], langs={"zh"})
    llm = FakeLLM({"answer": "It is a configuration file that upgrades leave alone."})
    res, _ = run("What is a Debian conffile?", llm, retriever=r)
    ctx = res.trace["context"]
    assert ctx[0]["chunk_ids"] == [101] and 103 in [c for p in ctx for c in p["chunk_ids"]]
    assert detect_language(cmds) == "en"  # the top passage on its own
    assert not res.abstained and res.support["method"] == "unverified"


def test_an_answer_that_restates_the_question_is_refused():
    q = "How do I upgrade a Python package with pip?"
    res, _ = run(q, FakeLLM({"answer": "Upgrade a Python package with pip."}), retriever=corpus(langs={"en"}))
    assert res.abstained and res.usage["model_calls"] >= 1
    assert any("restates the question" in e["reason"] for e in events_of(res, "decision") if e["step"] == "abstain")


@pytest.mark.parametrize("answer,abstained", [("是的。", False), ("文档中没有提到。", True), ("是的，全长10000公里。", True)])
def test_a_short_answer_over_sufficient_evidence_is_returned_uncited(answer, abstained):
    """A yes/no or one-word answer is too short for word-overlap attribution: with sufficient evidence it is
    returned without citations and marked unverified; a refusal or a made-up figure still is not."""
    res, _ = run("明长城全长是8851.8公里吗？", FakeLLM({"answer": answer}))
    assert res.abstained is abstained
    if not abstained:
        assert res.citations == [] and res.support["method"] == "unverified"
        assert any("too short to check" in e["reason"] for e in events_of(res, "decision") if e["step"] == "support")
        assert res.to_dict()["verified"] is False and "too short" in res.support["why_unverified"]
    else:
        assert res.to_dict()["verified"] is None


def test_an_answer_that_lost_sentences_says_how_many():
    res, _ = run("明长城全长多少公里？", FakeLLM({"answer": "明长城全长8851.8公里。它每年接待9999万名游客。"}))
    out = res.to_dict()
    assert not res.abstained and out["verified"] is True and out["dropped_sentences"] == 1
    assert "9999" not in res.answer and res.citations


def _inconclusive_options(**kw):
    # dense never "ok", coverage never "high": agreement alone leaves the signals inconclusive
    return AskOptions(judge=True, thresholds={"dense_min": 0.99, "coverage_high": 1.01}, **kw)


def test_judge_yes_answers():
    llm = FakeLLM({"judge": "能", "answer": "明长城全长8851.8公里。"})
    res, _ = run("明长城全长多少公里？", llm, options=_inconclusive_options())
    assert [c.purpose for c in res.calls] == ["judge", "answer"] and not res.abstained


def test_judge_no_rewrites_and_keeps_the_answer_call():
    llm = FakeLLM({"judge": "不能", "rewrite": "明长城 长度", "answer": "明长城全长8851.8公里。"})
    res, _ = run("明长城全长多少公里？", llm, options=_inconclusive_options())
    assert [c.purpose for c in res.calls] == ["judge", "rewrite", "answer"]


def test_judge_is_skipped_when_it_would_eat_the_answer_call():
    llm = FakeLLM({"answer": "明长城全长8851.8公里。"})
    res, _ = run("明长城全长多少公里？", llm, options=_inconclusive_options(), budget=Budget(max_model_calls=1))
    assert [c.purpose for c in res.calls] == ["answer"]


def test_judge_incomplete_expands_top_passage():
    llm = FakeLLM({"judge": "INCOMPLETE", "answer": "Create a virtual environment and run pip install."})
    opts = AskOptions(judge=True, max_passages=1, expand=True,
                      thresholds={"dense_min": 0.99, "coverage_high": 1.01, "min_passages": 1})
    res, _ = run("Which steps install a package?", llm, options=opts)
    assert [c.purpose for c in res.calls][:1] == ["judge"]
    assert any(e["added"] for e in events_of(res, "expansion"))


def test_empty_question_rejected():
    from rag.ask import AskError

    with pytest.raises(AskError):
        ask("   ", corpus(), FakeLLM({}), Budget(), OPT)


def test_settings_recorded_for_replay():
    llm = FakeLLM({"answer": "明长城全长8851.8公里。"})
    b = Budget().merged({"max_model_calls": 2})
    res, _ = run("明长城全长多少公里？", llm, budget=b)
    s = res.trace["settings"]
    assert s["budget"]["max_model_calls"] == 2 and s["model_id"] == "fake-llm" and s["prompts_version"]
    assert s["options"]["thresholds"]["dense_min"] == 0.83


def test_unrelated_evidence_in_monolingual_collection_abstains_after_rewrite():
    llm = FakeLLM({"rewrite": "telephone inventor"})
    r = corpus(langs={"en"})
    res, _ = run("Who invented the telephone?", llm, retriever=r)
    assert res.abstained and [c.purpose for c in res.calls] == ["rewrite"]
    assert "without an answer call" in events_of(res, "decision")[-1]["reason"]
