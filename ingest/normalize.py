"""Text normalisation applied to every piece of text a parser emits.

`normalize_text` is idempotent and works piece by piece: parsers normalise each block *before* they
compute offsets, then join blocks with ASCII separators, so the joined text is itself normalised and
every offset stays exact. It never changes the meaning of text:

* Unicode NFC (not NFKC: full-width punctuation, ligatures and compatibility characters are kept,
  because Chinese text relies on full-width forms and NFKC would rewrite them);
* ``\\r\\n`` and lone ``\\r`` become ``\\n``; form feed, vertical tab, U+0085, U+2028 become ``\\n``,
  U+2029 (paragraph separator) becomes ``\\n\\n``;
* removed: zero-width characters (U+200B-U+200D, U+2060-U+2064, U+FEFF), the soft hyphen U+00AD,
  bidi controls (U+200E, U+200F, U+202A-U+202E, U+2066-U+2069, U+061C), Unicode tag characters
  (U+E0000-U+E007F), variation selectors are kept; every other C0 control except ``\\t`` and ``\\n``,
  DEL and the C1 controls (U+0080-U+009F), lone surrogates, and the non-characters U+FFFE/U+FFFF.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text", "INVISIBLE_RE"]

# Characters removed outright.
INVISIBLE_RE = re.compile(
    "["
    "\x00-\x08\x0e-\x1f\x7f"  # C0 controls except \t \n \v \f \r (handled below), DEL
    "\x80-\x84\x86-\x9f"  # C1 controls except U+0085 (NEL, a line break)
    "\u00ad"  # soft hyphen
    "\u061c"  # Arabic letter mark
    "\u200b-\u200f"  # zero-width space/non-joiner/joiner, LRM, RLM
    "\u202a-\u202e"  # bidi embeddings and overrides
    "\u2060-\u2064"  # word joiner, invisible operators
    "\u2066-\u2069"  # bidi isolates
    "\ufeff"  # BOM / zero-width no-break space
    "\ud800-\udfff"  # lone surrogates (cannot be encoded; may come from JSON or pypdf)
    "\ufffe\uffff"  # non-characters
    "\U000e0000-\U000e007f"  # tag characters
    "]+"
)
_LINEBREAK_RE = re.compile("\r\n?|[\x0b\x0c\x85\u2028]")
_FAST_OK_RE = re.compile("[^\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ud800-\udfff\ufeff\ufffe\uffff\U000e0000-\U000e007f]*")


def normalize_text(s: str) -> str:
    """Return `s` in NFC with invisible, bidi, tag and control characters removed (see module doc)."""
    if not s:
        return ""
    if not _FAST_OK_RE.fullmatch(s):
        s = _LINEBREAK_RE.sub("\n", s)
        s = s.replace("\u2029", "\n\n")
        s = INVISIBLE_RE.sub("", s)
    if not s.isascii():
        s = unicodedata.normalize("NFC", s)
        # Normalising after removal also recomposes a base and a combining mark that a removed
        # invisible character used to separate.
    return s
