"""Words by which a follow-up question points back at earlier turns of a conversation.

A follow-up that names its own subject ("Which port does imaps use?") is searched as asked; one
that leans on the turns before it, by a pronoun ("When was it created?", "它是哪一年发布的？"), a
demonstrative ("that release"), an ordinal without its noun ("the second one", "第二个") or an
ellipsis ("And ldaps?", "what about telnets?", "ldaps 呢？"), is first condensed into a standalone
question (`rag.ask.condense`). `markers` finds those words; the text is folded first
(`rag.text.fold`: Traditional to Simplified, casefolded), so one list serves both Chinese scripts.

Measured with `rag bench conversations` (rag_bench/eval/data/conversations.jsonl): the rule flags
the follow-ups written to depend on their history and leaves most standalone questions alone; a
false alarm costs one condense call, a miss searches the follow-up as asked.
"""

from __future__ import annotations

import re

from rag.text.fold import fold
from rag.text.lang import base, detect_language, han_count

__all__ = ["markers", "follow_up_language", "substitute_ellipsis"]

_NOUNS = (r"one|ones|package|packages|command|program|tool|file|filesystem|format|directory|port|release|version|"
          r"value|option|service|area|archive|architecture|level|codename|name|number|year|manual|book|document|"
          r"entry|key|daemon|server|protocol|system|method")
_EN = re.compile(
    r"\b(?:it|its|itself|they|them|their|theirs|he|him|his|she|her|former|latter)\b|"
    rf"\b(?:this|that|these|those) (?:{_NOUNS})\b|\b(?:this|that|these|those)(?=\s*[?.!]*$)|"
    r"\bthe (?:first|second|third|fourth|last|other|same|previous|next)(?: ones?\b|(?=\s*[?.!]*$))|"
    r"\b(?:what|how) about\b|\bhow (?:many|much|long|old) (?:do|does|did|is|are|was|were)\b|\bwhich one\b")
_EN_START = re.compile(r"^\s*(?:and|also|then|so|but|or|what about|how about)\b")
_ZH = re.compile(
    r"它|他们|她们|他(?!人)|她|其中|其余|(?<!应)该(?=[^死])|这(?:个|些|种|款|台|项|里|两|一)|那(?:个|些|种|款|台|项|里|两|一)|"
    r"上述|上面(?:的|那)|前者|后者|第[一二三四五六七八九十两\d]+(?:个|种|项|条|款|位|章|部)?(?=[呢吗？?]|$)|"
    r"呢\s*[？?]?\s*$")
_ZH_START = re.compile(r"^\s*(?:那|还有|另外|而|也|再|那么|那么|那它)")


def markers(text: str) -> list[str]:
    """The back-pointing words in `text`, in order of appearance (an empty list: it stands alone)."""
    t = fold(text).strip()
    found = [m.group(0).strip() for rx in (_EN_START, _EN, _ZH_START, _ZH) for m in rx.finditer(t)]
    return list(dict.fromkeys(f for f in found if f))


def follow_up_language(text: str, previous: str) -> str:
    """The language of a follow-up, given the previous turn's question. A follow-up is often a name
    and a particle ("sensible-editor 呢？", "ldaps 呢？"): counted by characters it reads as English,
    and it was answered and condensed in English in a Chinese conversation. When it mixes Chinese
    characters with Latin words and the conversation is Chinese, it keeps the conversation's language
    (and script); otherwise its own."""
    own = detect_language(text)
    before = detect_language(previous)
    if base(own) == "en" and base(before) == "zh" and han_count(text) > 0:
        return before
    return own


_ELLIPSIS_ZH = re.compile(r"^\s*(?:那么|那|还有|還有)?\s*(?P<x>[^？?]{1,40}?)\s*呢\s*[？?]?\s*$")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]*(?:\(\d[a-z]?\))?")
_LATIN = re.compile(r"[A-Za-z]")


def substitute_ellipsis(text: str, previous: str) -> str | None:
    """The standalone form of a Chinese ellipsis "X 呢？" ("ftps 呢？" after "pop3s 使用哪个端口？"), made
    without a model: X put in place of the previous question's last Latin name, which in these
    questions is its subject ("ftps 使用哪个端口？"). None when the rule does not apply: not that shape,
    X without a Latin name or pointing back itself ("它呢？"), or a previous question with no Latin name
    followed by a Chinese predicate. Measured on `rag bench conversations`: the 1.5B condensed "CMake
    呢？" and "sensible-editor 呢？" wrongly (the second into English); this form cannot drift."""
    m = _ELLIPSIS_ZH.match(text or "")
    if m is None:
        return None
    x = m.group("x").strip()
    if not _LATIN.search(x) or markers(x):
        return None
    names = list(_NAME.finditer(previous or ""))
    if not names:
        return None
    predicate = previous[names[-1].end():]
    if han_count(predicate) < 2 or not predicate.rstrip().endswith(("？", "?")):
        return None
    return x + predicate
