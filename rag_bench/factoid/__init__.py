"""`rag bench factoid`: short-answer accuracy on the factoid set (`rag_bench.eval.factoid`), per model × runtime.

Every question goes through the asking loop (`rt.questions.ask`) against the collection holding its own
document (`factoid-<doc>`: one collection per Debian document, so an English question is asked over the
English Reference or FAQ, a Traditional Chinese one over the zh-tw Reference). Only the documents the
sampled questions need are ingested; with a persistent `data_dir` a document already in its collection is
not ingested again, so the same questions can be re-asked with another generator or runtime cheaply.

The generator and its runtime come from settings (`RAG_GENERATOR`, `RAG_GENERATOR_RUNTIME`); the report
names both, and `compare_tables` puts two reports side by side.

Modules: `runner` (options, selecting, ingesting and asking the questions, the summary data) and `report`
(markdown and JSON report, stdout table, comparison of two reports). `runner.qa_summary` and
`report.qa_report_lines` are the factoid section of `rag bench qa --factoid N`.
"""

from rag_bench.factoid.report import (compare_tables, load_report, main_table, qa_report_lines, stdout_table,
                                      write_report)
from rag_bench.factoid.runner import (Options, ask_items, collection_name, ingest_documents, peak_rss_mb, qa_summary,
                                      run, select, summarize)

__all__ = ["Options", "ask_items", "collection_name", "compare_tables", "ingest_documents", "load_report",
           "main_table", "peak_rss_mb", "qa_report_lines", "qa_summary", "run", "select", "stdout_table",
           "summarize", "write_report"]
