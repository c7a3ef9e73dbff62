"""Ingestion's embedder in a child process: same vectors as in-process, a lower CPU priority,
survives its child dying, and is shut down with the runtime."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from rag.models.embed_process import ChildSpec, EmbedProcess, EmbedProcessError

TEXTS = ["长城是中国古代的军事防御工程。", "The Great Wall is about 21,196 km long.", "網路設定檔位於 /etc/network/interfaces。"] * 4


@pytest.fixture(scope="module")
def embedder(small_embedder_dir):
    from rag.models.embedder import Embedder

    return Embedder.load(small_embedder_dir, model_id="all-minilm-l6-v2")


@pytest.fixture()
def child(embedder, small_embedder_dir):
    proc = EmbedProcess(ChildSpec(str(small_embedder_dir), embedder.model_id, embedder.passage_prefix,
                                  embedder.batch_size, threads=1, niceness=7), embedder.dim)
    yield proc
    proc.close()


def test_the_child_gives_the_same_vectors_at_a_lower_priority(child, embedder):
    got = child.embed_passages(TEXTS)
    want = embedder.embed_passages(TEXTS)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.min(np.sum(got * want, axis=1)) > 0.99999
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == os.getpriority(os.PRIO_PROCESS, 0) + 7
    assert child.embed_passages([]).shape == (0, embedder.dim)


def test_a_child_that_dies_is_replaced_and_its_batch_sent_again(child, embedder):
    want = embedder.embed_passages(TEXTS * 5)
    child.embed_passages(TEXTS[:2])
    first = child.pid
    os.kill(first, signal.SIGKILL)  # dead between batches
    assert child.embed_passages(TEXTS[:2]).shape[0] == 2 and child.pid != first

    victim = child.pid
    killer = threading.Timer(0.2, lambda: os.kill(victim, signal.SIGKILL))
    killer.start()
    results = []
    while child.pid == victim and len(results) < 500:  # batches until one was running when the child died
        results.append(child.embed_passages(TEXTS * 5))
    killer.join()
    assert child.pid not in (victim, None)
    assert all(np.min(np.sum(r * want, axis=1)) > 0.99999 for r in results)


def test_a_child_that_cannot_start_is_a_clear_error(embedder, tmp_path):
    broken = EmbedProcess(ChildSpec(str(tmp_path / "no-model"), "x", "", 8, threads=1, niceness=0), embedder.dim)
    with pytest.raises(EmbedProcessError, match="did not start"):
        broken.embed_passages(["text"])
    broken.close()


def test_the_runtime_ingests_through_the_child_and_stops_it(small_settings):
    from rag.service.runtime import Runtime

    settings = small_settings.model_copy(update={"ingest_embed_process": True})
    runtime = Runtime(settings)
    runtime.start()
    try:
        from ingest.uploads import Upload

        (job,) = runtime.ingest.submit("default", [Upload("wall.txt", "The Great Wall is long. 长城很长。".encode())])
        runtime.ingest.wait_idle(120)
        assert runtime.ingest.get_job(job.id).status == "done"
        pid = runtime.embed_process.pid
        assert pid is not None and pid != os.getpid()
    finally:
        runtime.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the embedding child outlived the runtime")


def test_serving_starts_the_child_before_the_first_upload(small_settings):
    from rag.service.runtime import Runtime

    settings = small_settings.model_copy(update={"ingest_embed_process": True})
    cold = Runtime(settings)
    cold.start()
    try:
        time.sleep(1)
        assert cold.embed_process.pid is None  # a one-off command starts it only when something is ingested
    finally:
        cold.close()
    warm = Runtime(settings)
    warm.start(warm_ingest=True)
    try:
        deadline = time.monotonic() + 60
        while warm.embed_process.pid is None and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = warm.embed_process.pid
        assert pid is not None and pid != os.getpid()  # ready with nothing uploaded
        vectors = warm.embed_process.embed_passages(["长城很长。"])
        assert vectors.shape == (1, warm.embedder.dim) and warm.embed_process.pid == pid  # the same child serves
    finally:
        warm.close()


def test_concurrent_queries_are_embedded_together_with_the_same_vectors(embedder):
    """Many request threads asking at once: fewer model calls than queries, each query gets its own
    vector (as embedded alone), and a failure reaches every waiting thread."""
    queries = [f"question number {i} about the great wall" for i in range(24)]
    alone = {q: embedder.embed_queries([q])[0] for q in queries}
    calls = []
    real = embedder.model.encode

    def counting(texts, **kw):
        calls.append(len(texts))
        time.sleep(0.05)  # a slow model call, so that the others queue up behind it
        return real(texts, **kw)

    embedder.model.encode = counting
    try:
        barrier = threading.Barrier(len(queries))
        got = {}

        def ask(q):
            barrier.wait()
            got[q] = embedder.embed_queries([q])[0]

        threads = [threading.Thread(target=ask, args=(q,)) for q in queries]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert set(got) == set(queries)
        assert all(float(np.dot(got[q], alone[q])) > 0.9999 for q in queries)
        assert sum(calls) == len(queries) and len(calls) < len(queries) / 2, calls

        def broken(texts, **kw):
            time.sleep(0.05)
            raise RuntimeError("model failed")

        embedder.model.encode = broken
        errors = []

        def ask_failing(q):
            try:
                embedder.embed_queries([q])
            except RuntimeError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=ask_failing, args=(q,)) for q in queries[:6]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == ["model failed"] * 6
    finally:
        embedder.model.encode = real


def test_counting_tokens_while_queries_are_embedded_is_safe(embedder):
    """The chunker counts tokens in the ingestion thread while searches embed queries: a count must
    never change how a batch is padded (it once came back ragged: 'expected sequence of length')."""
    stop = threading.Event()
    failures = []

    def embed(seed):
        i = 0
        while not stop.is_set():
            i += 1
            try:
                embedder.embed_queries(["short", "a much longer query about the great wall " * (1 + (seed + i) % 5)])
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(repr(exc))

    def count():
        while not stop.is_set():
            try:
                assert embedder.count_tokens("长城是中国古代的军事防御工程。" * 3) > 0
                embedder.count_tokens_batch(["one", "two words", "three more words"])
            except Exception as exc:  # noqa: BLE001
                failures.append(repr(exc))

    threads = [threading.Thread(target=embed, args=(s,)) for s in range(4)] + [threading.Thread(target=count) for _ in range(2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the old shared tokenizer failed in 3 s
    try:
        for t in threads:
            t.start()
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        sys.setswitchinterval(interval)
    assert failures == []
