"""Ingestion's embedder in a child process: same vectors as in-process, a lower CPU priority,
survives its child dying, and is shut down with the runtime."""

from __future__ import annotations

import os
import signal
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
