"""`rag bench ingest --fairness`: how long a small upload waits while a large document is ingesting.

A 2 MB Markdown document (the Debian FAQ's English and Chinese text, repeated to size) is uploaded;
once it is embedding, a 1 KB note is uploaded, and the bench times the note from upload to `done`
and to its first search hit, then the large document to `done`. With one worker the note would wait
for the whole large document; with `RAG_INGEST_WORKERS` >= 2 the two take turns at the embedder.
"""

from __future__ import annotations

import gzip
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rag.settings import Settings

FAQ = Path("/usr/share/doc/debian/FAQ")
NOTE = ("# Ferry timetable\n\nThe ferry to the east pier of Lindholm leaves every 40 minutes from 06:10 to 22:50. "
        "Bicycles travel free; dogs must be on a lead. The last ferry on Sundays leaves at 21:30, and in storms "
        "the harbour office posts cancellations on the board beside the ticket machine.\n") * 3


@dataclass
class Fairness:
    big_bytes: int
    big_chunks: int
    note_done_s: float
    note_searchable_s: float
    big_done_s: float
    workers: int


def big_document(size: int = 2_000_000) -> bytes:
    text = "\n\n".join(gzip.decompress((FAQ / f"debian-faq.{lang}.txt.gz").read_bytes()).decode()
                       for lang in ("en", "zh-cn"))
    out, i = [], 0
    while sum(len(p) for p in out) < size:
        i += 1
        out.append(f"\n\n# Copy {i}\n\n{text}".encode())
    return b"".join(out)[:size].decode("utf-8", "ignore").encode()  # whole characters only


def _wait(rt, job_id: str, timeout: float = 3600) -> str:
    deadline = time.monotonic() + timeout
    while (job := rt.ingest.get_job(job_id)).status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
    return job.status


def bench_fairness(settings: Settings) -> Fairness:
    from ingest.uploads import Upload
    from rag.service.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="rag-bench-fair-") as tmp:
        s = settings.model_copy(update={"data_dir": Path(tmp), "load_generator": False,
                                        "model_cache_dir": settings.models_dir})
        rt = Runtime(s)
        rt.start(worker=True, warm_ingest=True)
        try:
            data = big_document()
            t0 = time.monotonic()
            (big,) = rt.ingest.submit("default", [Upload("faq-2mb.md", data)])
            while (job := rt.ingest.get_job(big.id)).progress.get("stage") not in ("embedding", "indexing"):
                if job.status not in ("queued", "running"):
                    raise RuntimeError(f"the large document ended before embedding: {job.status} {job.error_code} "
                                       f"{job.error_message}")
                time.sleep(0.05)
            t1 = time.monotonic()
            (note,) = rt.ingest.submit("default", [Upload("ferry.md", NOTE.encode())])
            if _wait(rt, note.id) != "done":
                raise RuntimeError(f"the note failed: {rt.ingest.get_job(note.id).error_message}")
            done = time.monotonic() - t1
            while not any("Lindholm" in c.text for _, c in rt.searcher.search_found("default", "ferry Lindholm", 3).results):
                time.sleep(0.05)
            searchable = time.monotonic() - t1
            if _wait(rt, big.id) != "done":
                raise RuntimeError(f"the large document failed: {rt.ingest.get_job(big.id).error_message}")
            big_s = time.monotonic() - t0
            chunks = rt.ingest.get_job(big.id).progress.get("chunks", 0)
        finally:
            rt.close()
    return Fairness(len(data), int(chunks), done, searchable, big_s, s.ingest_workers)


def report(f: Fairness) -> str:
    return (f"fairness ({f.workers} ingestion workers): a 1 KB note sent while a {f.big_bytes / 1e6:.1f} MB document "
            f"({f.big_chunks:,} chunks) was embedding: done after {f.note_done_s:.1f} s, searchable after "
            f"{f.note_searchable_s:.1f} s; the large document done after {f.big_done_s:.0f} s")
