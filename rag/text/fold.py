"""Folding for matching: the one form in which question terms, answers and passages are compared.

`fold` is NFKC (full-width letters and digits become ASCII), Traditional -> Simplified (OpenCC
``t2s``) and casefolding, so a Traditional question matches Simplified passages and the other way
round. The BM25 analyzer folds differently on purpose (lower case, Taiwan phrases with ``tw2sp``,
a fast path for Simplified text: `rag.index.lexical.Analyzer.fold`); its output is part of the
stored index and of `ANALYZER_ID`.
"""

from __future__ import annotations

import unicodedata

from rag.text.lang import to_simplified

__all__ = ["fold"]


def fold(text: str) -> str:
    """Matching form: NFKC, Traditional -> Simplified, casefolded."""
    return to_simplified(unicodedata.normalize("NFKC", text or "")).casefold()
