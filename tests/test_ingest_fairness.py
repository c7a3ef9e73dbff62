"""One large document cannot hold ingestion: jobs run side by side and take turns at the embedder
batch by batch; text that only repeats itself is refused before any embedding."""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path

import pytest

from rag.errors import IngestError
from rag.service.pipeline import check_not_repetitive
from rag.service.turns import FairTurns
from tests.test_job_control import app_client, upload, wait_job

FAQ_EN = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")


def test_turns_are_taken_in_the_order_they_were_asked_for():
    turns, order, started = FairTurns(), [], threading.Barrier(2)

    def big() -> None:
        started.wait()
        for i in range(6):
            with turns:
                order.append("big")
                time.sleep(0.02)

    def small() -> None:
        started.wait()
        time.sleep(0.03)  # asks while the big one holds its first turn
        with turns:
            order.append("small")

    threads = [threading.Thread(target=big), threading.Thread(target=small)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order.index("small") <= 2, order  # a plain lock lets "big" take every turn first


@pytest.mark.parametrize("text, refused", [
    ("[" * 100_000, True),
    ("The mirror is synced every six hours and the index is signed. " * 3_000, True),
    ("长城" * 100_000, True),
    ("".join(f"2026-12-07T10:{i // 60 % 60:02d}:{i % 60:02d} host sshd[{1000 + i % 50}]: Accepted publickey for "
             f"user{i % 7} from 10.0.{i % 255}.{i * 7 % 255} port {40000 + i % 999}\n" for i in range(3_000)), False),
    ("".join(f"{i},{i * 3},{i % 10},0,0,0\n" for i in range(20_000)), False),
])
def test_repetitive_text_is_told_from_logs_and_tables(text, refused):
    chunks = max(1, len(text) // 300)  # about what 256-token chunks make of these
    if refused:
        with pytest.raises(IngestError) as exc:
            check_not_repetitive(text, chunks)
        assert exc.value.code == "repetitive_text"
    else:
        check_not_repetitive(text, chunks)


def test_faq_text_is_not_repetitive():
    text = gzip.decompress(FAQ_EN.read_bytes()).decode()
    check_not_repetitive(text, len(text) // 900)


def test_a_small_upload_is_searchable_while_a_large_document_is_still_embedding(small_settings):
    big_text = gzip.decompress(FAQ_EN.read_bytes()).decode()[:400_000]
    with app_client(small_settings) as client:
        big = upload(client, "faq.txt", big_text).json()["jobs"][0]["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/v1/jobs/{big}").json()["progress"].get("stage") != "embedding":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        t0 = time.monotonic()
        small = upload(client, "ferry.txt", "The ferry to the east pier leaves every 40 minutes.").json()["jobs"][0]["id"]
        assert wait_job(client, small)["status"] == "done"
        waited = time.monotonic() - t0
        assert client.get(f"/v1/jobs/{big}").json()["status"] == "running", "the large job ended first"
        hits = client.post("/v1/collections/default/search", json={"query": "ferry east pier", "k": 1}).json()["results"]
        assert "ferry" in hits[0]["text"]
        assert wait_job(client, big, timeout=600)["status"] == "done"
        print(f"small upload done {waited:.1f} s after it was sent, while the large one embedded")
