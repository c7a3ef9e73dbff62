"""The Debian FAQ (packages `debian-faq`, `debian-faq-zh-cn`) as question/answer sets with gold spans.

The FAQ is read from the installed package at run time (never copied into the repository). Its plain
text edition (`debian-faq.<lang>.txt.gz`) has a table of contents, then chapters ("Chapter 1. ...",
"第 1 章 ...") and numbered entries whose heading starts at column 0 ("1.2.<NBSP>What is Debian
GNU/Linux?", possibly wrapped onto further column-0 lines) and whose body is indented. An entry's
heading is the question; its body is the gold answer.

Two documents per language are built from the shipped text by deleting lines only:

* `shipped`: the decompressed text exactly as installed;
* `noheadings`: the same without the table of contents and without every chapter and entry heading
  line, so retrieval must match a question to the content of its answer.

Gold spans are character offsets into a given text (the ingested document's text, or the raw text a
baseline indexes), found by `locate`, which matches the body with whitespace removed and Unicode
compatibility folding, so line re-wrapping and NBSP/space changes done by a parser do not matter.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from rag.text.scripts import FAQ_CJK
from rag.text.sentences import GOLD_SENTENCE_SPLIT_EN, GOLD_SENTENCE_SPLIT_ZH

FAQ_DIR = Path("/usr/share/doc/debian/FAQ")
PACKAGES = {"en": "debian-faq", "zh": "debian-faq-zh-cn"}
FILES = {"en": "debian-faq.en.txt.gz", "zh": "debian-faq.zh-cn.txt.gz"}

_ENTRY = re.compile(r"^(\d+(?:\.\d+)+)\.\u00a0(.*)$")
_CHAPTER = re.compile(r"^(?:Chapter\u00a0\d+\.|第\s*\d+\s*章)")
# A space between two CJK characters: what re-wrapping leaves in a Chinese heading or answer.
_WRAP_SPACE = re.compile(f"(?<=[{FAQ_CJK}]) (?=[{FAQ_CJK}])")


class MissingPackage(RuntimeError):
    def __init__(self, lang: str):
        self.package = PACKAGES[lang]
        super().__init__(f"{FAQ_DIR / FILES[lang]} not found: install the Debian package {self.package!r} "
                         f"(apt-get install {self.package})")


@dataclass
class Entry:
    number: str
    question: str
    body: str  # dedented body text (NBSP kept as in the source)

    @property
    def is_question(self) -> bool:
        return "?" in self.question or "？" in self.question


@dataclass
class Faq:
    lang: str
    shipped: str
    noheadings: str
    entries: list[Entry] = field(default_factory=list)

    def by_number(self) -> dict[str, Entry]:
        return {e.number: e for e in self.entries}


def faq_path(lang: str) -> Path:
    return FAQ_DIR / FILES[lang]


def missing_packages(langs: list[str]) -> list[str]:
    return [PACKAGES[l] for l in langs if not faq_path(l).is_file()]


def package_version(lang: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", PACKAGES[lang]], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


def _indented(line: str) -> bool:
    return bool(line) and line[0].isspace()  # NBSP counts as space (bodies sometimes start with NBSPs)


def parse(text: str, lang: str) -> Faq:
    lines = text.split("\n")
    first = next((i for i, l in enumerate(lines) if _ENTRY.match(l)), None)
    if first is None:
        raise ValueError("no numbered FAQ entry found")
    start = first
    while start > 0 and not _CHAPTER.match(lines[start]):  # back to the first chapter heading
        start -= 1
    toc = next((i for i, l in enumerate(lines[:start]) if l.strip() in ("Table of Contents", "目录")), None)
    keep: list[str] = []
    for i, line in enumerate(lines):
        if toc is not None and toc <= i < start:
            continue
        if i >= start and line.strip() and not _indented(line):
            continue  # a chapter or entry heading line (or a wrapped heading continuation)
        keep.append(line)
    entries: list[Entry] = []
    i = start
    current: Entry | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            current.body = _dedent(body)
            entries.append(current)

    while i < len(lines):
        line = lines[i]
        if line.strip() and not _indented(line):
            m = _ENTRY.match(line)
            heading = [line]
            while i + 1 < len(lines) and lines[i + 1].strip() and not _indented(lines[i + 1]):
                i += 1
                heading.append(lines[i])
            if m:
                close()
                q = " ".join([m.group(2)] + [h.strip() for h in heading[1:]])
                if lang == "zh":  # a wrapped Chinese heading joins without a space between Han characters
                    q = _WRAP_SPACE.sub("", q)
                current, body = Entry(m.group(1), q.replace("\u00a0", " ").strip(), ""), []
            else:  # a chapter heading ends the previous entry
                close()
                current, body = None, []
        elif current is not None:
            body.append(line)
        i += 1
    close()
    return Faq(lang, text, "\n".join(keep), entries)


def _dedent(lines: list[str]) -> str:
    out = [l.replace("\u00a0", " ").strip() for l in lines]
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def load(lang: str) -> Faq:
    path = faq_path(lang)
    if not path.is_file():
        raise MissingPackage(lang)
    return parse(gzip.decompress(path.read_bytes()).decode("utf-8"), lang)


# ---------------------------------------------------------------- gold spans

def _keyed(text: str) -> tuple[str, list[int]]:
    """`text` folded (NFKC, lower case) with whitespace removed, and each folded character's source offset."""
    chars: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        for f in unicodedata.normalize("NFKC", ch).lower():
            if not f.isspace():
                chars.append(f)
                index.append(i)
    return "".join(chars), index


class Locator:
    """Finds entry bodies in one text, in document order (each search starts after the previous match)."""

    def __init__(self, text: str):
        self.text = text
        self.key, self.index = _keyed(text)
        self.pos = 0  # in key space

    def locate(self, body: str, window: int = 40) -> tuple[int, int] | None:
        bkey, _ = _keyed(body)
        if not bkey:
            return None
        w = min(window, len(bkey))
        start = end = None
        for off in range(0, max(1, len(bkey) - w + 1), max(1, w // 2)):  # tolerate a changed first line
            j = self.key.find(bkey[off:off + w], self.pos)
            if j != -1:
                start = max(0, j - off)
                break
        if start is None:
            return None
        for off in range(len(bkey), w - 1, -max(1, w // 2)):  # and a changed last line
            j = self.key.find(bkey[off - w:off], start)
            if j != -1 and j - start < len(bkey) * 2 + 200:
                end = j + w + (len(bkey) - off)
                break
        if end is None:
            return None
        end = min(end, len(self.key))
        self.pos = end
        return self.index[start], self.index[end - 1] + 1


def gold_spans(text: str, entries: list[Entry]) -> dict[str, tuple[int, int]]:
    """number -> [start, end) of the entry's body in `text`, for every body found (entries in order)."""
    loc = Locator(text)
    out: dict[str, tuple[int, int]] = {}
    for e in entries:
        if not e.body.strip():
            continue
        saved = loc.pos
        span = loc.locate(e.body)
        if span is None:
            loc.pos = saved
            continue
        out[e.number] = span
    return out


# ---------------------------------------------------------------- questions

def first_sentences(body: str, lang: str, max_chars: int = 300) -> str:
    """The gold answer's first sentences: whole sentences up to about `max_chars` (at least one)."""
    text = re.sub(r"\s+", " " if lang != "zh" else " ", body).strip()
    if lang == "zh":
        text = _WRAP_SPACE.sub("", text)
        parts = GOLD_SENTENCE_SPLIT_ZH.split(text)
    else:
        parts = GOLD_SENTENCE_SPLIT_EN.split(text)
    out = ""
    for p in parts:
        if out and len(out) + len(p) > max_chars:
            break
        out += p if lang == "zh" else ((" " if out else "") + p)
    return out.strip()


@dataclass(frozen=True)
class QAItem:
    number: str
    question: str
    question_lang: str
    doc_lang: str  # which FAQ holds the gold answer
    gold_answer: str  # first sentences of the entry's body in the question's language (the answer's language)


def qa_items(question_faq: Faq, doc_faq: Faq, min_body_chars: int = 40) -> list[QAItem]:
    """Entries phrased as questions whose body (in the document's language) is substantive, paired by number.

    The gold answer text is taken from the question's own FAQ (the answer is expected in the question's
    language; the two FAQs are translations of each other), the gold span from the document's FAQ."""
    docs = doc_faq.by_number()
    out = []
    for e in question_faq.entries:
        d = docs.get(e.number)
        if not e.is_question or d is None or len(d.body) < min_body_chars or not e.body.strip():
            continue
        lang = question_faq.lang
        out.append(QAItem(e.number, e.question, lang, doc_faq.lang,
                          first_sentences(e.body, lang, 300 if lang != "zh" else 120)))
    return out
