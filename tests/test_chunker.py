"""Chunker: the hard cap, exact offsets, sentence and structure awareness, real documents, speed."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunker import chunk_document, split_sentences
from ingest.parsers.markdown import parse_markdown
from ingest.parsers.text import parse_text
from ingest.types import Block, ParsedDocument

from tests.helpers_ingest import minilm_count_tokens, parsed_reference_pdf

count_tokens = minilm_count_tokens()


def check_chunks(doc, chunks, cap, overlap=0):
    """Invariants every chunking must satisfy."""
    prev_start, prev_end = -1, 0
    for i, c in enumerate(chunks):
        assert c.ordinal == i
        assert c.text == doc.text[c.char_start:c.char_end]
        assert c.text and c.text == c.text.strip()
        assert c.token_count == count_tokens(c.text) <= cap
        assert len(c.text) <= 8 * cap
        if overlap == 0:
            assert c.char_start >= prev_end  # in order, no overlap
            # nothing with tokens is skipped between chunks
            assert count_tokens(doc.text[prev_end:c.char_start]) == 0
        else:
            assert c.char_start > prev_start and c.char_end > prev_end  # progress
        prev_start, prev_end = c.char_start, c.char_end
    if overlap == 0 and doc.blocks:
        last = max(b.end for b in doc.blocks)
        assert count_tokens(doc.text[prev_end:last]) == 0


def _sents(text):
    return [text[s:e] for s, e in split_sentences(text)]


# --------------------------------------------------------------------------- sentences


def test_chinese_half_width_punctuation_splits_sentences():
    text = "我们今天去公园.你呢?我不去!好吧;那就这样.“真的吗?”他问.最后一句"
    assert _sents(text) == ["我们今天去公园.", "你呢?", "我不去!", "好吧;", "那就这样.", "“真的吗?”", "他问.", "最后一句"]


def test_chinese_full_width_punctuation_and_closers():
    text = "第一句。第二句！第三句？“引号里的句子。”括号（里面。）后面……省略号后面；分号后"
    assert _sents(text) == ["第一句。", "第二句！", "第三句？", "“引号里的句子。”", "括号（里面。）", "后面……", "省略号后面；", "分号后"]


def test_english_sentences_keep_abbreviations_numbers_and_paths():
    text = (
        "Dr. Smith uses Debian, e.g. the stable release. Pi is about 3.14 today. "
        "Version 1.2.3 was released by J. Doe on Jan. 5. Edit /etc/apt/sources.list. "
        "Then run apt-get update! Visit https://www.debian.org/doc/index.html. Done... Really? "
        "See Fig. 3 and U.S. law etc. and more."
    )
    assert _sents(text) == [
        "Dr. Smith uses Debian, e.g. the stable release.",
        "Pi is about 3.14 today.",
        "Version 1.2.3 was released by J. Doe on Jan. 5.",
        "Edit /etc/apt/sources.list.",
        "Then run apt-get update!",
        "Visit https://www.debian.org/doc/index.html.",
        "Done...",
        "Really?",
        "See Fig. 3 and U.S. law etc. and more.",
    ]


def test_numbered_list_marker_is_not_a_sentence():
    assert _sents("1. Install it.\n2. Run it.") == ["1. Install it.", "2. Run it."]


# --------------------------------------------------------------------------- hard cap


def test_long_chinese_sentence_without_punctuation_is_split_under_cap():
    base = "中华人民共和国是一个历史悠久的国家我们在这里学习计算机系统的基本知识以及操作系统的原理"
    sentence = (base * (2000 // len(base) + 1))[:2000]
    doc = parse_text(sentence)
    for cap in (16, 64, 256):
        chunks = chunk_document(doc, count_tokens, cap)
        check_chunks(doc, chunks, cap)
        assert "".join(c.text for c in chunks) == sentence
        assert len(chunks) >= count_tokens(sentence) / cap
        assert max(c.token_count for c in chunks) >= cap * 0.8  # pieces are filled, not tiny


def test_long_sentence_splits_at_clauses_first():
    clause = "这是一个比较长的分句，"
    text = clause * 60 + "结束。"
    doc = parse_text(text)
    chunks = chunk_document(doc, count_tokens, 50)
    check_chunks(doc, chunks, 50)
    assert all(c.text.endswith("，") or c.text.endswith("。") for c in chunks)


def test_long_english_word_run_splits_at_whitespace():
    words = " ".join(f"word{i}" for i in range(600))
    doc = parse_text(words)
    chunks = chunk_document(doc, count_tokens, 40)
    check_chunks(doc, chunks, 40)
    for c in chunks:
        assert c.text.split()[0].startswith("word") and c.text.split()[-1].startswith("word")
        assert all(w.startswith("word") and w[4:].isdigit() for w in c.text.split())  # whole words


def test_unk_heavy_text_is_bounded_by_characters():
    blob = "x" * 50_000  # one [UNK] token per 100+ characters for BERT
    doc = parse_text(blob)
    chunks = chunk_document(doc, count_tokens, 32)
    check_chunks(doc, chunks, 32)
    assert all(len(c.text) <= 8 * 32 for c in chunks)


def test_cap_smaller_than_one_character_is_an_error():
    doc = parse_text("🙂" * 10)
    with pytest.raises(ValueError):
        chunk_document(doc, lambda s: 2 * len(s), 1)


def test_invalid_overlap():
    with pytest.raises(ValueError):
        chunk_document(parse_text("x"), count_tokens, 10, overlap_tokens=10)


# --------------------------------------------------------------------------- structure


def test_chunks_never_cross_headings():
    md = "# A\n\n" + "Alpha sentence here. " * 30 + "\n\n## B\n\nBeta text.\n\n# C\n\n" + "Gamma. " * 5
    doc = parse_markdown(md)
    chunks = chunk_document(doc, count_tokens, 64)
    check_chunks(doc, chunks, 64)
    for c in chunks:
        paths = {b.section_path for b in doc.blocks if b.start < c.char_end and b.end > c.char_start}
        assert len(paths) == 1
        assert c.section_path in paths
    assert [c.section_path for c in chunks if c.text.startswith("B")] == [("A", "B")]


def test_prefers_paragraph_boundaries():
    paras = ["Paragraph number %d has a few words in it. It has two sentences." % i for i in range(12)]
    doc = parse_text("\n\n".join(paras))
    chunks = chunk_document(doc, count_tokens, 60)
    check_chunks(doc, chunks, 60)
    for c in chunks:
        assert c.text.startswith("Paragraph") and c.text.endswith("sentences.")


def test_page_of_chunk_start_and_page_preference():
    # two pages, one section: the chunk breaks at the page boundary when it is at least half full
    p1 = "First page sentence. " * 8
    p2 = "Second page sentence. " * 8
    text = p1.strip() + "\n\n" + p2.strip()
    b1 = Block("paragraph", 0, len(p1.strip()), (), 1)
    b2 = Block("paragraph", len(p1.strip()) + 2, len(text), (), 2)
    from ingest.types import PageSpan

    doc = ParsedDocument(text=text, format="pdf", blocks=[b1, b2], pages=[PageSpan(1, b1.start, b1.end), PageSpan(2, b2.start, b2.end)])
    chunks = chunk_document(doc, count_tokens, 60)
    check_chunks(doc, chunks, 60)
    assert [c.page for c in chunks] == [1, 2]
    assert chunks[0].char_end == b1.end


def test_overlap_repeats_previous_sentences():
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    doc = parse_text(text)
    chunks = chunk_document(doc, count_tokens, 50, overlap_tokens=12)
    check_chunks(doc, chunks, 50, overlap=12)
    for prev, cur in zip(chunks, chunks[1:]):
        assert cur.char_start < prev.char_end  # overlapping
        shared = doc.text[cur.char_start:prev.char_end]
        assert count_tokens(shared) <= 12


def test_document_without_blocks():
    doc = ParsedDocument(text="Para one. Two.\n\n\nPara two here.", format="text")
    assert [c.text for c in chunk_document(doc, count_tokens, 100)] == ["Para one. Two.\n\n\nPara two here."]
    assert [c.text for c in chunk_document(doc, count_tokens, 6)] == ["Para one. Two.", "Para two here."]


# --------------------------------------------------------------------------- properties

_WORDS = st.sampled_from(
    ["the", "Debian", "apt-get", "e.g.", "Dr.", "3.14", "/etc/apt/sources.list", "https://debian.org/x?y=1",
     "引导", "加载程序", "系统", "內核", "繁體", "中文", "，", "。", "！", "？", "；", "、", "：", ".", "!", "?", ";", ",",
     " ", " ", "\n", "\n\n", "- ", "1. ", "“", "”", "（", "）", "...", "……", "supercalifragilistic", "ünïcödé", "🙂"]
)


@given(
    pieces=st.lists(st.one_of(_WORDS, st.text(max_size=6)), max_size=400),
    cap=st.integers(16, 300),
    overlap_frac=st.sampled_from([0, 0, 0.1, 0.4]),
    markdown=st.booleans(),
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_cap_and_exact_offsets(pieces, cap, overlap_frac, markdown):
    raw = "".join(pieces)
    doc = parse_markdown(raw) if markdown else parse_text(raw)
    overlap = int(cap * overlap_frac)
    chunks = chunk_document(doc, count_tokens, cap, overlap_tokens=overlap)
    check_chunks(doc, chunks, cap, overlap)


@given(
    st.text(alphabet=st.sampled_from(list("中文字词句段落测试系统内核引导加载程序abcxyz ")), min_size=1, max_size=3000),
    st.integers(16, 300),
)
@settings(max_examples=60, deadline=None)
def test_property_unpunctuated_text(text, cap):
    doc = parse_text(text)
    chunks = chunk_document(doc, count_tokens, cap)
    check_chunks(doc, chunks, cap)


# --------------------------------------------------------------------------- real documents


def test_real_zh_cn_reference_pdf_chunks():
    doc = parsed_reference_pdf("zh-cn")
    t0 = time.perf_counter()
    chunks = chunk_document(doc, count_tokens, 256)
    elapsed = time.perf_counter() - t0
    check_chunks(doc, chunks, 256)
    total = sum(c.token_count for c in chunks)
    # ~350k characters, ~210k tokens: about 1,100 chunks of ~190 tokens
    assert 600 <= len(chunks) <= 2500
    assert total / len(chunks) > 120
    assert elapsed < 0.1 * total / 4300  # well under 10% of the embedder's time for these tokens
    # the page of each chunk is the page of its first character
    for c in chunks:
        span = doc.pages[c.page - 1]
        assert span.start <= c.char_start < span.end
    # a sampled passage: the chunk holding it starts on its page (or the page before, when it spans)
    passage = "引导加载程序是启动过程的第二阶段"
    at = doc.text.find(passage)
    holder = next(c for c in chunks if c.char_start <= at < c.char_end)
    page = next(p.number for p in doc.pages if p.start <= at < p.end)
    assert holder.page == page or (holder.page == page - 1 and holder.char_end > doc.pages[page - 1].start)
    assert holder.section_path[-1] == "3.1.2 第二阶段：引载加载程序"


def test_real_en_reference_pdf_chunking_speed():
    doc = parsed_reference_pdf("en")
    t0 = time.perf_counter()
    chunks = chunk_document(doc, count_tokens, 256)
    elapsed = time.perf_counter() - t0
    check_chunks(doc, chunks, 256)
    total = sum(c.token_count for c in chunks)
    assert 500 <= len(chunks) <= 2500
    assert elapsed < 0.1 * total / 4300


# --------------------------------------------------------------------------- degenerate input

_WORDS = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega".split()


def _one_line(n: int) -> str:
    words, size, i = [], 0, 0
    while size < n:
        w = _WORDS[i % len(_WORDS)] + str(i % 97)
        words.append(w)
        size += len(w) + 1
        i += 1
    return " ".join(words)[:n]


DEGENERATE = {
    "one huge word": lambda n: "x" * n,
    "one huge line": _one_line,
    "Chinese without punctuation": lambda n: ("长城" * n)[:n],
    "one sentence of entities": lambda n: ("& " * n)[:n],
    "backtick soup": lambda n: ("`a` " * n)[:n],
}


@pytest.mark.parametrize("make", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_chunking_degenerate_text_is_linear(make):
    """The work is the characters handed to the tokenizer: at most a small constant per character
    of text, the same constant at 40k and 80k characters (no quadratic step), and every chunk
    within the cap."""
    work = {}
    for n in (40_000, 80_000):
        text = make(n)
        fed = [0]

        def counting(s: str) -> int:
            fed[0] += len(s)
            return count_tokens(s)

        doc = ParsedDocument(text, "text")
        chunks = chunk_document(doc, counting, 128)
        check_chunks(doc, chunks, 128)
        work[n] = fed[0] / len(text)
    assert work[80_000] <= 12, work
    assert work[80_000] <= work[40_000] * 1.15, work
