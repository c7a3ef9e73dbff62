"""Where sentences and clauses end: every sentence-splitting rule of the service, named by its user.

They share their pieces (`ZH_STOPS`, `LATIN_STOPS`, `SEMICOLONS`, `CLOSERS`, the `.` rule) but are
not one rule, on purpose: each was tuned for what its caller cuts, and changing one moves chunk
boundaries (stored chunks, BM25 terms, embeddings), passage cuts, attribution sentences or the QA
bench's gold answers. What differs, and why:

* a ``.`` ends a sentence only before whitespace or the end ("3.14", "example.com" never split),
  except in the chunker, which matches every dot run and decides in code (abbreviations, initials,
  list numbers: `ingest.chunker`);
* a single line break ends a sentence in model answers and passages (answers are short lines, list
  items), but is only wrapping in documents: the chunker and `FIGURE_SENTENCE_END` want a blank line;
* semicolons end sentences in answers, passage cuts, chunks and Chinese gold answers, but not in
  `FIGURE_SENTENCE_END`, where a figure's territory goes on past them up to its clause end
  (`FIGURE_CLAUSE_END`), nor in English gold answers;
* an ellipsis ends a sentence in passage cuts and chunks only.
"""

from __future__ import annotations

import re

from rag.text.scripts import NO_SPACE

ZH_STOPS = "。！？"  # full-width full stop, exclamation and question marks
LATIN_STOPS = "!?"  # "." is never in a set: each rule below treats it apart
SEMICOLONS = "；;"
CLOSERS = "”’」』）)"  # closing quotes and brackets that stay with the sentence they end
ASCII_QUOTES = "\"'"
# A "." before whitespace or the end, with the closing quotes and parenthesis after it.
_DOT_END = r"\.(?=\s|$)[”’\"')]*"
_STOPS = ZH_STOPS + LATIN_STOPS + SEMICOLONS

# Model answers, one sentence per match (its text and its end), for attribution (`rag.ask.cite`).
# Every line is a sentence; an ASCII quote after a Chinese stop stays with its sentence.
ANSWER_SENTENCE = re.compile(f"[^{_STOPS}\\n]*?(?:[{_STOPS}]+[{CLOSERS}{ASCII_QUOTES}]*|{_DOT_END}|\\n|$)")

# A model answer's sentence that ended (a stop, or a "." at its end, and the closers after it), for
# telling a whole last sentence from one the answer call was cut in (`rag.ask.cite.unfinished_tail`).
ANSWER_SENTENCE_ENDED = re.compile(f"(?:[{_STOPS}]|\\.)[{CLOSERS}{ASCII_QUOTES}]*$")

# Where a passage may be cut when it must be shortened to fit the prompt (`rag.ask.pack`): any sentence
# stop, an ellipsis too, and any line break (a list item or a heading ends there).
PACK_SENTENCE_END = re.compile(f"[{_STOPS}…]+[{CLOSERS}]*|{_DOT_END}|\\n+")

# The sentence a figure sits in (`rag.ask.figures`). Passages come from hard-wrapped text and PDF
# documents, so a single line break is wrapping and a blank line ends a paragraph.
FIGURE_SENTENCE_END = re.compile(f"[{ZH_STOPS}{LATIN_STOPS}]|\\.(?:\\s|$)|\\n\\s*\\n")
# Where one figure's territory inside a sentence ends (`rag.ask.figures.owner_span`).
FIGURE_CLAUSE_END = re.compile(r"[，,；;：:、]|\s(?:while|whereas|but|and)\s|而|但|其中")

# Document chunking (`ingest.chunker`). The chunker decides in code whether a half-width stop or a dot
# run ends a sentence (what follows it, the word before it), so these match every candidate: runs of
# stops, ellipses (… and ⋯), the half-width ｡ and full-width ．, and a blank line. More closing marks
# stay with the sentence than elsewhere (】》〉〕, ] and >).
CHUNK_CLOSERS = CLOSERS + ASCII_QUOTES + "\\]】》〉〕>"
CHUNK_SENTENCE_END = re.compile(
    f"(?:[{ZH_STOPS}｡；]+|…+|⋯+|[{LATIN_STOPS};]+|\\.+|．)[{CHUNK_CLOSERS}]*|\\n[ \\t]*\\n"
)
# Stops that end a sentence whatever follows them (no space needed after them).
CHUNK_FULLWIDTH_END = frozenset(ZH_STOPS + "｡；…⋯")
# Clause punctuation, where a sentence longer than the chunk cap is split: full-width always, half-width
# only before whitespace, a CJK character or the end (not "1,000", "a:b"); and any line break.
CHUNK_CLAUSE_END = re.compile(f"(?:[，、；：—]+|[,;:]+(?=\\s|[{NO_SPACE}]|$))[{CHUNK_CLOSERS}]*|\\n")

# A PDF line ending in sentence or clause punctuation is running text, never a heading
# (`ingest.parsers.pdf`).
LINE_ENDS_CLAUSE = re.compile(r"[,，、;；。.!?！？]$")

# The first sentences of a Debian FAQ answer, the QA bench's gold answer (`rag_bench.eval.faq`): split after
# each Chinese stop; in English at whitespace after . ! ? when a capital, quote, parenthesis or
# backquote follows.
GOLD_SENTENCE_SPLIT_ZH = re.compile(f"(?<=[{ZH_STOPS}；])")
GOLD_SENTENCE_SPLIT_EN = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(`])")
