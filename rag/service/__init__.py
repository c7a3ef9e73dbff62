"""The one floor that knows store, indexes, models and ingestion, and wires them into services.

    runtime      the composition root: builds and holds everything below
    ingesting    uploads -> durable jobs -> one worker thread (pipeline: parse, chunk, embed, store)
    collections  collections, documents and chunks: reads and deletes
    searching    hybrid search over one collection, and the loop's `Retriever` port over it
    answering    questions: validate (prepare), run the loop, keep the ledger
    replay       re-run a recorded question and compare it with its recording

The API and the CLI call these services; they never reach the store or the indexes themselves.
"""
