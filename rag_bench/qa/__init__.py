"""`rag bench qa`: answer quality and cost on the Debian FAQ, against LlamaIndex, in the same run.

Data (`rag_bench.eval.faq`): the English and Simplified Chinese Debian FAQ, read from the installed packages
(`debian-faq`, `debian-faq-zh-cn`). Each numbered entry's heading is a question, its body the gold answer.
Every FAQ is indexed twice: with the headings removed (a question must match its answer's content) and
as shipped. Question sets: English questions on the English FAQ (`en>en`), Chinese on Chinese (`zh>zh`),
and cross-lingual (`en>zh`, `zh>en`, entries paired by number).

Gold spans are character offsets of the entry body in the ingested document's text (and, for
LlamaIndex, in the text it indexed); a chunk or node hits gold when its [start, end) overlaps the span.

Configurations (ours): `dense`, `bm25`, `hybrid` (retrieval only, every question of every set);
`hybrid+expand` (the asking loop with rewriting off: one answer call over hybrid retrieval with neighbour
expansion), `loop` (the full loop, default budget), `loop-force-rewrite` (one rewrite round every time).
LlamaIndex (`rag_bench.eval.llama`, the optional `bench` extra): `li-vector` (retrieval only, top-10),
`llamaindex` (its default query engine: top-2, compact), `li-fusion` (`QueryFusionRetriever`, vector +
BM25, 3 generated queries). Model-calling configurations answer the same questions of the
headings-removed sets, round-robin within the run's wall-clock target (see `runner.run_answering`).

Modules: `configs` (the configurations and shared constants), `runner` (options, question sets, running
every configuration, collecting the records), `report` (summaries, markdown report, charts, stdout table).
"""

from rag_bench.qa.configs import ALL_CONFIGS, RATE_KEYS
from rag_bench.qa.report import stdout_table, write_report
from rag_bench.qa.runner import MissingExtra, Options, run

__all__ = ["ALL_CONFIGS", "RATE_KEYS", "MissingExtra", "Options", "run", "stdout_table", "write_report"]
