"""The one home of language and text rules; every module that reads text by language uses these.

* `rag.text.scripts`: character ranges: `HAN` (the only Han set), `NO_SPACE` (scripts written
  without spaces, for wrapping and sentence ends) and the named blocks they are built from.
* `rag.text.lang`: language and script detection (``zh-Hans``, ``zh-Hant``, ``en``), Simplified /
  Traditional conversion.
* `rag.text.sentences`: sentence and clause ends, one named regex per use (chunking, passage cuts,
  answer sentences, figures, PDF headings, gold answers) with why they differ.
* `rag.text.fold`: the matching form of a text (NFKC, Simplified, casefolded).

The package imports no other part of the service, so both `ingest` and `rag` can use it.
"""
