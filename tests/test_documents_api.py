"""Documents through the API: the language detected at ingestion, a chunk shown with its neighbours.

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
# Thirty paragraphs of distinct English sentences: over ten chunks at chunk_tokens=128.
ENGLISH = "\n\n".join(
    f"Section {i}. The harbour office keeps ledger number {i} in cabinet {i * 7}. "
    f"Every morning clerk {i} checks the tide tables, records the arrivals of ferry {i}, "
    f"and files the customs forms for cargo lot {i * 13} before the noon bell rings over the quay."
    for i in range(30)
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


# --------------------------------------------------------------------------- a chunk in context


def chunk_ids_of(client, collection: str, document_id: int) -> list[int]:
    r = client.get(f"/v1/collections/{collection}/documents/{document_id}/chunks")
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()["chunks"]]


def context(client, collection: str, chunk_id, **params):
    return client.get(f"/v1/collections/{collection}/chunks/{chunk_id}", params=params)


def ids(chunks: list[dict]) -> list[int]:
    return [c["id"] for c in chunks]


def test_chunk_with_its_neighbours_in_reading_order(docs_client):
    client, docs = docs_client
    doc = docs["harbour.txt"]
    cs = chunk_ids_of(client, "docs", doc["id"])
    assert len(cs) >= 10, "the English document must span several chunks for this test"
    listed = {c["id"]: c for c in client.get(f"/v1/collections/docs/documents/{doc['id']}/chunks").json()["chunks"]}

    r = context(client, "docs", cs[3])  # default: one on each side
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got) == {"chunk", "before", "after", "document"}
    assert got["chunk"] == listed[cs[3]]
    assert ids(got["before"]) == [cs[2]] and ids(got["after"]) == [cs[4]]
    assert got["before"][0] == listed[cs[2]] and got["after"][0] == listed[cs[4]]
    assert got["document"]["id"] == doc["id"] and got["document"]["filename"] == "harbour.txt"
    assert got["document"]["language"] == "en"

    got = context(client, "docs", cs[3], neighbours=5).json()
    assert ids(got["before"]) == cs[0:3] and ids(got["after"]) == cs[4:9]  # the nearest last / first

    start = context(client, "docs", cs[0], neighbours=2).json()  # the document's start: nothing before
    assert ids(start["before"]) == [] and ids(start["after"]) == cs[1:3]
    end = context(client, "docs", cs[-1], neighbours=5).json()  # its end: nothing after
    assert ids(end["before"]) == cs[-6:-1] and ids(end["after"]) == []

    alone = context(client, "docs", cs[2], neighbours=0).json()
    assert alone["chunk"]["id"] == cs[2] and alone["before"] == [] and alone["after"] == []

    # neighbours never cross into another document of the collection
    other_doc = docs["rail-trad.txt"]
    (only,) = chunk_ids_of(client, "docs", other_doc["id"])
    got = context(client, "docs", only, neighbours=5).json()
    assert got["before"] == [] and got["after"] == [] and got["document"]["language"] == "zh-Hant"


def test_chunk_of_another_collection_or_missing_is_404(docs_client):
    client, docs = docs_client
    (foreign,) = chunk_ids_of(client, "other", docs["other.txt"]["id"])
    own = chunk_ids_of(client, "docs", docs["harbour.txt"]["id"])[0]
    assert context(client, "other", foreign).status_code == 200
    for collection, chunk_id in [("docs", foreign), ("other", own), ("docs", foreign + 10_000), ("docs", 2**63 - 1)]:
        r = context(client, collection, chunk_id)
        assert r.status_code == 404 and r.json()["error"]["code"] == "chunk_not_found", (collection, chunk_id, r.text)
    r = context(client, "nope", own)
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"


@pytest.mark.parametrize("chunk_id,params", [
    (2**63, {}), (2**64 + 5, {}), (10**30, {}), (0, {}), (-1, {}), ("abc", {}), ("1.5", {}),
    (1, {"neighbours": 6}), (1, {"neighbours": -1}), (1, {"neighbours": "x"}),
])
def test_invalid_chunk_id_or_neighbours_is_422(docs_client, chunk_id, params):
    client, _ = docs_client
    r = context(client, "docs", chunk_id, **params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"


def test_chunk_context_follows_the_keys_grants(docs_client):
    client, docs = docs_client
    r = client.post("/v1/keys", json={"role": "read", "collections": ["other"], "name": "other reader"})
    assert r.status_code == 201, r.text
    auth = {"Authorization": f"Bearer {r.json()['key']}"}
    (foreign,) = chunk_ids_of(client, "other", docs["other.txt"]["id"])
    own = chunk_ids_of(client, "docs", docs["harbour.txt"]["id"])[0]
    assert client.get(f"/v1/collections/other/chunks/{foreign}", headers=auth).status_code == 200
    r = client.get(f"/v1/collections/docs/chunks/{own}", headers=auth)  # not granted: as if it did not exist
    assert r.status_code == 404 and r.json()["error"]["code"] == "collection_not_found"
    r = client.get(f"/v1/collections/other/chunks/{own}", headers=auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "chunk_not_found"
