"""A factoid accuracy set over Debian documents this project did not write, and how it is scored.

The set (`data/factoid.jsonl`, shipped with the package) holds one JSON object per line:

* ``id``, ``lang`` (``en`` | ``zh-Hans`` | ``zh-Hant``), ``doc`` (a key of `DOCS`: which installed
  document the question is asked against), ``question``;
* ``gold``: acceptable short answers (any one matching is correct), ``[]`` for an unanswerable item;
* ``kind``: ``number`` (a count or a quantity with its unit), ``name`` (a package, program, person ...),
  ``date``, ``version``, ``path``, ``command``, ``unit``, or ``unanswerable``;
* ``evidence``: a verbatim passage of the document (as our parser produces it, up to whitespace) that
  states the answer; empty for unanswerable items;
* ``absent`` (unanswerable items only): subject terms that occur in none of the documents.

The documents are read from installed Debian packages at run time (never copied into the repository).

Scoring (`score`), over per-question records with ``answerable``, ``abstained``, ``citations`` (a
count) and ``correct``:

* accuracy: correct answers / answerable questions (an abstention is not correct);
* confident-wrong rate: questions answered (not abstained) *with at least one citation* whose answer is
  wrong (an answerable question answered without any gold key, or any answer to an unanswerable
  question), divided by all answered questions, answerable and unanswerable together. Uncited wrong
  answers (e.g. cross-lingual answers marked unverified) are counted separately as ``wrong_uncited``;
* abstention on unanswerable: abstentions / unanswerable questions (higher is better);
* false abstention: abstentions / answerable questions (lower is better).

A gold key matches when its normalised token sequence (`normalise`) occurs contiguously in the
normalised answer (inline citation markers like ``[1]`` removed first).
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from rag.text.scripts import HAN

DATA = Path(__file__).with_name("data") / "factoid.jsonl"
LANGS = ("en", "zh-Hans", "zh-Hant")


@dataclass(frozen=True)
class DocSource:
    key: str
    lang: str
    path: Path
    package: str
    filename: str  # the upload name (the parser picks plain text from the extension)


_REF = Path("/usr/share/debian-reference")
_FAQ = Path("/usr/share/doc/debian/FAQ")
DOCS: dict[str, DocSource] = {
    "reference-en": DocSource("reference-en", "en", _REF / "debian-reference.en.txt.gz", "debian-reference-en",
                              "debian-reference.en.txt"),
    "reference-zh-cn": DocSource("reference-zh-cn", "zh-Hans", _REF / "debian-reference.zh-cn.txt.gz",
                                 "debian-reference-zh-cn", "debian-reference.zh-cn.txt"),
    "reference-zh-tw": DocSource("reference-zh-tw", "zh-Hant", _REF / "debian-reference.zh-tw.txt.gz",
                                 "debian-reference-zh-tw", "debian-reference.zh-tw.txt"),
    "faq-en": DocSource("faq-en", "en", _FAQ / "debian-faq.en.txt.gz", "debian-faq", "debian-faq.en.txt"),
    "faq-zh-cn": DocSource("faq-zh-cn", "zh-Hans", _FAQ / "debian-faq.zh-cn.txt.gz", "debian-faq-zh-cn",
                           "debian-faq.zh-cn.txt"),
}


class MissingPackage(RuntimeError):
    def __init__(self, doc: str):
        src = DOCS[doc]
        self.package = src.package
        super().__init__(f"{src.path} not found: install the Debian package {src.package!r} "
                         f"(apt-get install {src.package})")


@dataclass(frozen=True)
class Item:
    id: str
    lang: str
    doc: str
    question: str
    gold: tuple[str, ...]
    kind: str
    evidence: str = ""
    absent: tuple[str, ...] = field(default_factory=tuple)

    @property
    def answerable(self) -> bool:
        return bool(self.gold)


def load_set(path: Path = DATA) -> list[Item]:
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        d = json.loads(line)
        try:
            items.append(Item(d["id"], d["lang"], d["doc"], d["question"], tuple(d["gold"]), d["kind"],
                              d.get("evidence", ""), tuple(d.get("absent", ()))))
        except KeyError as exc:
            raise ValueError(f"{path}:{n}: missing field {exc}") from None
    return items


def missing_packages(docs) -> list[str]:
    return sorted({DOCS[d].package for d in docs if not DOCS[d].path.is_file()})


def doc_bytes(doc: str) -> bytes:
    """The installed document, decompressed (the bytes that are ingested)."""
    src = DOCS[doc]
    if not src.path.is_file():
        raise MissingPackage(doc)
    return gzip.decompress(src.path.read_bytes())


def doc_text(doc: str) -> str:
    return doc_bytes(doc).decode("utf-8")


def package_version(doc: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", DOCS[doc].package], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


def squash(text: str) -> str:
    """Whitespace-free NFKC form, for locating evidence in a text whose lines a parser may re-wrap."""
    return "".join(unicodedata.normalize("NFKC", text or "").split())


# ---------------------------------------------------------------- normalisation

_CITE_MARK = re.compile(r"\s*\[\d+(?:\s*[,，]\s*\d+)*\]")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
_CN_RUN = re.compile(r"[零〇一二两三四五六七八九十][零〇一二两三四五六七八九十百千万亿]*")
_MAGNITUDE = {"万": 10_000, "亿": 100_000_000, "万亿": 10 ** 12, "千": 1000, "百": 100,
              "thousand": 1000, "million": 10 ** 6, "billion": 10 ** 9, "trillion": 10 ** 12}
_MAG_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*(万亿|万|亿|千|百|thousand|million|billion|trillion)")
_GROUPED = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?!\d)(?!,\d)")
_DECIMAL = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?!\.\d)")
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                       "dec"), 1)}
_MON = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE_PATTERNS = (  # (regex, group order: year, month, day)
    (re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]"), (1, 2, 3)),
    (re.compile(r"(?<![\d.])(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?![\d.])"), (1, 2, 3)),
    (re.compile(_MON + r"\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})"), (3, 1, 2)),
    (re.compile(r"(?<!\d)(\d{1,2})(?:st|nd|rd|th)?\s+" + _MON + r",?\s+(\d{4})"), (3, 2, 1)),
)
_MONTH_PATTERNS = (
    (re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月"), (1, 2)),
    (re.compile(r"(?<![\d.])(\d{4})-(\d{1,2})(?![\d.])"), (1, 2)),
    (re.compile(_MON + r",?\s+(\d{4})"), (2, 1)),
)
_TOKEN = re.compile(r"\d+(?:\.\d+)*|[^\W\d_]+")
_SYNONYMS = {"秒钟": "秒", "分钟": "分"}


def _cn_value(run: str) -> int | None:
    """Value of a run of Chinese numerals (三 -> 3, 二十五 -> 25, 一千七百五十亿 -> 175000000000, 一九九三 -> 1993)."""
    if all(c in _CN_DIGITS for c in run):  # digit by digit: 一九九三, 二〇二三
        return int("".join(str(_CN_DIGITS[c]) for c in run)) if len(run) > 1 or run not in "零〇" else 0
    total, section, digit = 0, 0, None
    for c in run:
        if c in _CN_DIGITS:
            digit = _CN_DIGITS[c]
        elif c in _CN_UNITS:
            section += (1 if digit is None else digit) * _CN_UNITS[c]
            digit = None
        elif c in _CN_BIG:
            section += digit or 0
            if c == "亿":
                total = (total + section) * _CN_BIG[c]
            else:
                total += (section or 1) * _CN_BIG[c]
            section, digit = 0, None
    return total + section + (digit or 0)


def _num_str(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x)).rstrip("0").rstrip(".")


def _dates(t: str) -> str:
    def month(m: str) -> int:
        return _MONTHS[m[:3]] if not m.isdigit() else int(m)

    for rx, (yi, mi, di) in _DATE_PATTERNS:
        def full(m: re.Match) -> str:
            y, mo, d = int(m.group(yi)), month(m.group(mi)), int(m.group(di))
            if not (1 <= mo <= 12 and 1 <= d <= 31):
                return m.group(0)
            return f" date{y:04d}{mo:02d}{d:02d} {y} "
        t = rx.sub(full, t)
    for rx, (yi, mi) in _MONTH_PATTERNS:
        def part(m: re.Match) -> str:
            y, mo = int(m.group(yi)), month(m.group(mi))
            if not 1 <= mo <= 12:
                return m.group(0)
            return f" month{y:04d}{mo:02d} {y} "
        t = rx.sub(part, t)
    return t


def normalise(text: str) -> str:
    """Matching form of an answer or a gold key: space-separated tokens.

    NFKC (full-width digits and letters), Traditional -> Simplified, casefold; dates written as
    ``1970年1月1日``, ``1970-01-01`` or ``Jan 1, 1970`` become the same tokens (``date19700101 1970``, so a
    gold year still matches), likewise month and year; digit grouping removed (1,024 = 1024); Chinese
    numerals become digits (三 = 3, 二十五 = 25); magnitudes are multiplied out (1.5万 = 15000,
    1750亿 = 175 billion = 175000000000); decimals lose trailing zeros (5.0 = 5); then every separator
    and punctuation mark splits tokens, Latin letters and digits are split apart (83MiB = 83 MiB), and each
    Han character is its own token."""
    from rag.text.fold import fold

    t = fold(text or "")
    for a, b in _SYNONYMS.items():
        t = t.replace(a, b)

    def cn(m: re.Match) -> str:
        v = _cn_value(m.group(0))
        return m.group(0) if v is None else f" {v} "
    t = _CN_RUN.sub(cn, t)
    t = _dates(t)
    t = _GROUPED.sub(lambda m: m.group(0).replace(",", ""), t)
    t = _MAG_RE.sub(lambda m: f" {_num_str(float(m.group(1)) * _MAGNITUDE[m.group(2)])} ", t)
    t = _DECIMAL.sub(lambda m: m.group(1) + ("." + m.group(2).rstrip("0") if m.group(2).rstrip("0") else ""), t)
    t = re.sub(f"([{HAN}])", r" \1 ", t)
    return " ".join(_TOKEN.findall(t))


def _contains(hay: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(hay[i:i + n] == needle for i in range(len(hay) - n + 1))


def matched_key(answer: str, gold) -> str | None:
    """The first gold key whose normalised tokens occur contiguously in the normalised answer."""
    toks = normalise(_CITE_MARK.sub(" ", answer or "")).split()
    for key in gold:
        k = normalise(key).split()
        if k and _contains(toks, k):
            return key
    return None


def is_correct(answer: str, gold) -> bool:
    return bool(gold) and matched_key(answer, gold) is not None


# ---------------------------------------------------------------- scoring

def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def score(records: list[dict]) -> dict:
    """Metrics over records with ``answerable``, ``abstained``, ``citations`` (count) and ``correct``;
    see the module docstring for the definitions."""
    ans = [r for r in records if r["answerable"]]
    una = [r for r in records if not r["answerable"]]
    answered = [r for r in records if not r["abstained"]]
    wrong = [r for r in answered if not (r["answerable"] and r["correct"])]
    cited_wrong = [r for r in wrong if r["citations"] > 0]
    return {
        "n": len(records), "answerable": len(ans), "unanswerable": len(una), "answered": len(answered),
        "correct": sum(1 for r in ans if r["correct"]),
        "accuracy": _rate(sum(1 for r in ans if r["correct"]), len(ans)),
        "precision": _rate(sum(1 for r in answered if r["answerable"] and r["correct"]),
                           sum(1 for r in answered if r["answerable"])),
        "confident_wrong": len(cited_wrong),
        "confident_wrong_rate": _rate(len(cited_wrong), len(answered)),
        "wrong_uncited": len(wrong) - len(cited_wrong),
        "abstain_unanswerable": _rate(sum(1 for r in una if r["abstained"]), len(una)),
        "false_abstention": _rate(sum(1 for r in ans if r["abstained"]), len(ans)),
    }


def score_by_lang(records: list[dict]) -> dict[str, dict]:
    out = {"all": score(records)}
    for lang in LANGS:
        rows = [r for r in records if r["lang"] == lang]
        if rows:
            out[lang] = score(rows)
    return out
