"""Documents through the API: the language detected at ingestion.

One module-scoped in-process app with the small embedder and no generator (nothing here asks a
question), two collections and the admin key.
"""

from __future__ import annotations

import re

import pytest

from tests.server import local_client
from tests.test_ask_e2e import en_settings, wait_job

TRAD = ("臺灣的鐵路網絡覆蓋全島，高速鐵路連接臺北與高雄，旅客可以在九十分鐘內抵達。"
        "車站裡的售票機與閘門都支援電子票證，轉乘捷運與公車也很方便。")
SIMP = ("台湾的铁路网络覆盖全岛，高速铁路连接台北与高雄，旅客可以在九十分钟内抵达。"
        "车站里的售票机与闸门都支持电子票证，转乘捷运与公交也很方便。")
# Ten paragraphs of distinct English sentences: several chunks at chunk_tokens=128.
ENGLISH = "\n\n".join(
    f"Section {i}. The harbour office keeps ledger number {i} in cabinet {i * 7}. "
    f"Every morning clerk {i} checks the tide tables, records the arrivals of ferry {i}, "
    f"and files the customs forms for cargo lot {i * 13} before the noon bell rings over the quay."
    for i in range(10)
)


def upload(client, collection: str, files: dict[str, str]) -> dict[str, dict]:
    """Uploads text files, waits for their jobs, returns the documents by filename (as the API lists them)."""
    r = client.post(f"/v1/collections/{collection}/documents",
                    files=[("files", (name, text.encode(), "text/plain")) for name, text in files.items()])
    assert r.status_code == 202, r.text
    for j in r.json()["jobs"]:
        job = wait_job(client, j["id"])
        assert job["status"] == "done", job
    listed = client.get(f"/v1/collections/{collection}/documents").json()["documents"]
    return {d["filename"]: d for d in listed}


@pytest.fixture(scope="module")
def docs_client(tmp_path_factory, models_dir):
    from api.app import create_app

    settings = en_settings(tmp_path_factory.mktemp("docs") / "state", models_dir, load_generator=False)
    with local_client(create_app(settings), settings.data_dir, raise_server_exceptions=False) as client:
        for name in ("docs", "other"):
            assert client.post("/v1/collections", json={"name": name}).status_code == 201, name
        docs = upload(client, "docs", {"harbour.txt": ENGLISH, "rail-trad.txt": TRAD, "rail-simp.txt": SIMP})
        docs.update(upload(client, "other", {"other.txt": "The other collection holds one short note about ferries."}))
        yield client, docs


# --------------------------------------------------------------------------- language


def test_documents_carry_their_detected_language(docs_client):
    client, docs = docs_client
    assert {name: d["language"] for name, d in docs.items()} == {
        "harbour.txt": "en", "rail-trad.txt": "zh-Hant", "rail-simp.txt": "zh-Hans", "other.txt": "en"}
    trad = docs["rail-trad.txt"]
    assert client.get(f"/v1/collections/docs/documents/{trad['id']}").json()["language"] == "zh-Hant"


def test_language_reads_a_bounded_sample_spread_over_the_document(monkeypatch):
    """A 40 MB document: detection reads at most LANGUAGE_SAMPLE_CHARS, taken from its beginning,
    middle and end, so an English preface does not make a Chinese book English."""
    from rag.service import pipeline

    seen: list[str] = []
    real = pipeline.detect_language
    monkeypatch.setattr(pipeline, "detect_language", lambda text: seen.append(text) or real(text))
    texts = [f"<{i}> " + ("English preface words. " * 20 if i < 5 else TRAD * 4) for i in range(100_000)]
    assert sum(map(len, texts)) > 20_000_000
    assert pipeline.document_language(texts) == "zh-Hant"
    (sample,) = seen
    assert len(sample) <= pipeline.LANGUAGE_SAMPLE_CHARS
    picked = [int(m) for m in re.findall(r"<(\d+)>", sample)]
    assert picked[0] == 0 and picked[-1] == len(texts) - 1 and len(picked) == pipeline.LANGUAGE_SAMPLE_PIECES
    gaps = {b - a for a, b in zip(picked, picked[1:])}
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    assert pipeline.document_language(["Only English here."]) == "en"
    assert pipeline.document_language([SIMP]) == "zh-Hans"
