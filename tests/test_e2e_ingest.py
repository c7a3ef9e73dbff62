"""End to end through a real `rag serve` process: real Debian documents in Chinese and English,
hostile uploads, dedupe, collection isolation, delete/re-upload against all three stores.

Two module-scoped servers:

* `zh`: the default multilingual embedder (multilingual-e5-small) with default limits, for the
  Chinese acceptance checks, dedupe, isolation, delete/re-upload and the collections API.
* `hostile`: the small English embedder, `RAG_MAX_UPLOAD_BYTES=100000`, run from an empty working
  directory so that anything written outside its data dir can be seen.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import sqlite3
import time
import zlib
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.helpers_ingest import make_pdf, text_stream, zlib_zeros
from tests.server import Server

REF = Path("/usr/share/debian-reference")
FAQ = Path("/usr/share/doc/debian/FAQ")
ZH_CN_PDF = REF / "debian-reference.zh-cn.pdf"
ZH_TW_TXT = REF / "debian-reference.zh-tw.txt.gz"
FAQ_ZH_TXT = FAQ / "debian-faq.zh-cn.txt.gz"
FAQ_EN_PDF = FAQ / "debian-faq.en.pdf.gz"
FAQ_EN_TXT = FAQ / "debian-faq.en.txt.gz"

# The zh-cn PDF subset: pages 29..43 of the real book (chapter 1), renumbered 1..15.
FIRST_PAGE, LAST_PAGE = 29, 43

JOB_TIMEOUT = 240

pytestmark = pytest.mark.skipif(
    not (ZH_CN_PDF.is_file() and ZH_TW_TXT.is_file() and FAQ_ZH_TXT.is_file() and FAQ_EN_PDF.is_file()),
    reason="Debian documentation packages (debian-reference-*, debian-faq*) are not installed",
)


# --------------------------------------------------------------------------- helpers


def error_code(resp: httpx.Response) -> str | None:
    try:
        return resp.json()["error"]["code"]
    except Exception:  # noqa: BLE001
        return None


def upload(client: httpx.Client, collection: str, *files: tuple[str, bytes], **params) -> httpx.Response:
    return client.post(
        f"/v1/collections/{collection}/documents", params=params,
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
    )


def upload_raw(client: httpx.Client, collection: str, filename: bytes, data: bytes) -> httpx.Response:
    """A multipart body built by hand, so the file name reaches the server byte for byte."""
    boundary = b"----e2e-boundary-7d1c"
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="files"; filename="' + filename + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
        b"--" + boundary + b"--\r\n"
    )
    return client.post(f"/v1/collections/{collection}/documents", content=body,
                       headers={"content-type": "multipart/form-data; boundary=" + boundary.decode()})


def wait_job(client: httpx.Client, job_id: str, timeout: float = JOB_TIMEOUT, *, health: bool = True) -> dict:
    """Polls a job until it is finished; with `health`, /health must answer 200 on every poll."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        if health:
            assert client.get("/health").status_code == 200, "/health failed while a job was running"
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout}s: {job}"
        time.sleep(0.2)


def ingest(client: httpx.Client, collection: str, *files: tuple[str, bytes]) -> list[dict]:
    resp = upload(client, collection, *files)
    assert resp.status_code == 202, resp.text
    jobs = [wait_job(client, j["id"]) for j in resp.json()["jobs"]]
    for job in jobs:
        assert job["status"] == "done", job
    return jobs


def search(client: httpx.Client, collection: str, query: str, k: int = 10) -> list[dict]:
    resp = client.post(f"/v1/collections/{collection}/search", json={"query": query, "k": k})
    assert resp.status_code == 200, resp.text
    return resp.json()["results"]


def chunks_of(client: httpx.Client, collection: str, document_id: int) -> list[dict]:
    resp = client.get(f"/v1/collections/{collection}/documents/{document_id}/chunks")
    assert resp.status_code == 200, resp.text
    return resp.json()["chunks"]


def collection_info(client: httpx.Client, name: str) -> dict:
    (info,) = [c for c in client.get("/v1/collections").json()["collections"] if c["name"] == name]
    return info


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def db_ro(data_dir: Path) -> sqlite3.Connection:
    """A read-only connection to the server's database (WAL: readers run beside the server)."""
    conn = sqlite3.connect(f"file:{data_dir / 'rag.sqlite3'}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def sqlite_chunk_ids(data_dir: Path, collection: str) -> tuple[int, set[int]]:
    """(change_seq, chunk ids) of a collection, read in one transaction."""
    with closing(db_ro(data_dir)) as conn:
        conn.execute("BEGIN")
        seq = conn.execute("SELECT change_seq FROM collections WHERE name = ?", (collection,)).fetchone()[0]
        ids = {r[0] for r in conn.execute("SELECT id FROM chunks WHERE collection = ?", (collection,))}
        conn.execute("COMMIT")
    return int(seq), ids


_FAISS_RE = re.compile(r"^dense-(\d{12})-[0-9a-f]{8}\.faiss$")


def saved_faiss_ids(data_dir: Path, uid: str, seq: int, timeout: float = 30) -> set[int]:
    """Ids of the saved FAISS file that includes change `seq` (waits for the debounced autosave)."""
    import faiss

    folder = data_dir / "indexes" / uid
    deadline = time.monotonic() + timeout
    newest = None
    while time.monotonic() < deadline:
        files = sorted(((int(m.group(1)), p) for p in (folder.iterdir() if folder.is_dir() else ())
                        if (m := _FAISS_RE.match(p.name))), reverse=True)
        if files:
            newest = files[0][0]
            if newest == seq:
                try:
                    index = faiss.read_index(str(files[0][1]))
                except RuntimeError:  # replaced by a newer save between listing and reading
                    continue
                assert isinstance(index, faiss.IndexIDMap2), type(index)
                return set(faiss.vector_to_array(index.id_map).tolist())
            assert newest < seq, f"saved index seq {newest} is ahead of SQLite's {seq}"
        time.sleep(0.2)
    raise AssertionError(f"no FAISS file for seq {seq} in {folder} after {timeout}s (newest: {newest})")


def assert_three_stores_agree(data_dir: Path, client: httpx.Client, collection: str) -> set[int]:
    seq, ids = sqlite_chunk_ids(data_dir, collection)
    uid = collection_info(client, collection)["uid"]
    assert saved_faiss_ids(data_dir, uid, seq) == ids
    return ids


# --------------------------------------------------------------------------- documents


def zh_cn_pdf_subset() -> bytes:
    import pypdf

    reader = pypdf.PdfReader(str(ZH_CN_PDF))
    writer = pypdf.PdfWriter()
    for i in range(FIRST_PAGE - 1, LAST_PAGE):
        writer.add_page(reader.pages[i])
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def zh_tw_excerpt() -> str:
    """Sections 1.2.8-1.2.13 of the Traditional-script reference (named pipes ... tmpfs)."""
    text = gzip.decompress(ZH_TW_TXT.read_bytes()).decode("utf-8")
    start = text.index("\n1.2.8. 命名管道")
    end = text.index("\n1.3. Midnight Commander")
    return text[start:end].strip() + "\n"


def big5_bytes(text: str) -> bytes:
    """`text` as a Big5 file would hold it: no-break spaces as spaces, and the Taiwan standard forms
    of the few variant characters the book uses that Big5 lacks."""
    table = str.maketrans({"\xa0": " ", "爲": "為", "羣": "群", "僞": "偽", "啓": "啟"})
    return text.translate(table).encode("big5")


def faq_zh_excerpt() -> str:
    """Chapter 1 of the Simplified-script Debian FAQ (plain text)."""
    text = gzip.decompress(FAQ_ZH_TXT.read_bytes()).decode("utf-8").replace("\xa0", " ")
    start = text.index("\n第 1 章 定义和概览")
    end = text.index("\n1.6. ", start)
    return text[start:end].strip() + "\n"


# --------------------------------------------------------------------------- the Chinese server


@pytest.fixture(scope="module")
def e5_dir(models_dir) -> Path:
    from rag.models import cache
    from rag.models.registry import REGISTRY

    return cache.prepare(REGISTRY["multilingual-e5-small"], models_dir, progress=False).path


@pytest.fixture(scope="module")
def zh(tmp_path_factory, models_dir, e5_dir):
    root = tmp_path_factory.mktemp("e2e-zh")
    server = Server(root / "state", env={
        "RAG_MODEL_CACHE_DIR": str(models_dir),
        "RAG_LOAD_GENERATOR": "false",
        "RAG_EMBEDDER": "multilingual-e5-small",
    })
    server.start()
    client = server.client()
    try:
        assert client.post("/v1/collections", json={"name": "zhcn"}).status_code == 201
        assert client.post("/v1/collections", json={"name": "zhtw"}).status_code == 201
        resp = upload(client, "zhcn", ("debian-reference-ch1.zh-cn.pdf", zh_cn_pdf_subset()))
        assert resp.status_code == 202, resp.text
        resp_tw = upload(client, "zhtw", ("debian-reference-1.2.zh-tw.txt", zh_tw_excerpt().encode("utf-8")))
        assert resp_tw.status_code == 202, resp_tw.text
        (pdf_job,) = [wait_job(client, j["id"]) for j in resp.json()["jobs"]]
        (tw_job,) = [wait_job(client, j["id"]) for j in resp_tw.json()["jobs"]]
        assert pdf_job["status"] == "done", pdf_job
        assert tw_job["status"] == "done", tw_job
        yield {"server": server, "client": client, "data_dir": server.data_dir, "e5_dir": e5_dir,
               "pdf_doc": pdf_job["document_id"], "tw_doc": tw_job["document_id"]}
    finally:
        client.close()
        server.stop()


def top(results: list[dict], n: int) -> list[dict]:
    return results[:n]


def test_chinese_query_finds_its_passage_in_the_chinese_pdf(zh):
    c = zh["client"]
    # page 41 of the book (13 of the subset): "命名管道是一个像管道一样的文件。"
    results = search(c, "zhcn", "什么是命名管道？", k=5)
    hits = [r for r in top(results, 3) if "命名管道是一个像管道一样的文件" in squash(r["text"])]
    assert hits, [(r["page"], r["text"][:60]) for r in results]
    assert hits[0]["document_id"] == zh["pdf_doc"] and hits[0]["page"] == 41 - FIRST_PAGE + 1
    assert set(hits[0]["scores"]) == {"dense", "dense_rank", "bm25", "bm25_rank", "fused"}

    # page 32 (4 of the subset): "当做了一些滑稽的事（例如“cat 二进制文件”）后，屏幕会发狂，你可以在命令行输入“reset”。"
    results = search(c, "zhcn", "屏幕发狂以后怎样恢复正常的控制台", k=5)
    assert any("恢复一个正常的控制台" in squash(r["text"]) and r["page"] == 32 - FIRST_PAGE + 1
               for r in top(results, 3)), [(r["page"], r["text"][:60]) for r in results]


def test_traditional_query_finds_simplified_text_and_vice_versa(zh):
    c = zh["client"]
    # Traditional (Taiwan) wording against the Simplified PDF (page 43 of the book, tmpfs):
    # 臨時檔案系統 / 虛擬記憶體  ->  临时文件系统 / 虚拟内存
    results = search(c, "zhcn", "臨時檔案系統把檔案保存在虛擬記憶體中", k=5)
    hit = next((r for r in top(results, 3) if "临时文件系统" in squash(r["text"])), None)
    assert hit is not None, [(r["page"], r["text"][:60]) for r in results]
    assert hit["page"] == 43 - FIRST_PAGE + 1
    assert hit["scores"]["bm25_rank"] is not None, "the lexical index did not fold Traditional to Simplified"

    # and the Simplified wording against the Traditional text
    results = search(c, "zhtw", "临时文件系统把文件保存在虚拟内存中", k=5)
    hit = next((r for r in top(results, 3) if "臨時檔案系統" in squash(r["text"])), None)
    assert hit is not None, [r["text"][:60] for r in results]
    assert hit["document_id"] == zh["tw_doc"]
    assert hit["scores"]["bm25_rank"] is not None, "the lexical index did not fold Simplified to Traditional"

    results = search(c, "zhtw", "命名管道 先进先出", k=3)
    assert "命名管道是一個像管道一樣的檔案" in squash(results[0]["text"])


def test_bm25_sits_out_queries_in_a_language_the_collection_lacks(zh):
    """An English query on a Chinese-only collection is dense-only (BM25 would match only stray
    Latin words); a Chinese one on the same collection uses both, and the response says which."""
    c = zh["client"]
    assert c.post("/v1/collections", json={"name": "zh-only"}).status_code == 201
    ingest(c, "zh-only", ("basic-defs.zh-cn.html", (FAQ / "zh-cn" / "basic-defs.zh-cn.html").read_bytes()))
    body = c.post("/v1/collections/zh-only/search", json={"query": "What is Debian GNU/Linux?", "k": 5}).json()
    assert body["lexical"] is False and "en" in body["lexical_skipped"] and "zh" in body["lexical_skipped"]
    assert body["results"] and all(r["scores"]["bm25_rank"] is None for r in body["results"])
    assert all(r["scores"]["dense_rank"] is not None for r in body["results"])

    body = c.post("/v1/collections/zh-only/search", json={"query": "Debian GNU/Linux 是什么？", "k": 5}).json()
    assert body["lexical"] is True and body["lexical_skipped"] is None
    assert any(r["scores"]["bm25_rank"] is not None for r in body["results"])


def test_page_number_of_a_sampled_passage(zh):
    import pypdf

    c = zh["client"]
    reader = pypdf.PdfReader(str(ZH_CN_PDF))
    for book_page, sentence in ((41, "命名管道是一个像管道一样的文件"), (36, "可执行（x）权限允许所有者访问目录里的文件")):
        page_text = squash(reader.pages[book_page - 1].extract_text())
        assert sentence in page_text, f"sample sentence not on page {book_page} of the real PDF"
        assert all(sentence not in squash(reader.pages[p - 1].extract_text())
                   for p in range(FIRST_PAGE, LAST_PAGE + 1) if p != book_page)
        expected = book_page - FIRST_PAGE + 1  # page number in the uploaded subset

        containing = [ch for ch in chunks_of(c, "zhcn", zh["pdf_doc"]) if sentence in squash(ch["text"])]
        assert containing, f"no chunk contains the sentence from page {book_page}"
        assert {ch["page"] for ch in containing} == {expected}

        results = search(c, "zhcn", sentence, k=3)
        assert sentence in squash(results[0]["text"]) and results[0]["page"] == expected

    doc = c.get(f"/v1/collections/zhcn/documents/{zh['pdf_doc']}").json()
    assert doc["page_count"] == LAST_PAGE - FIRST_PAGE + 1
    assert doc["pages"] == list(range(1, LAST_PAGE - FIRST_PAGE + 2))


def test_every_chunk_is_within_the_token_cap(zh):
    from tokenizers import Tokenizer

    from rag.settings import Settings

    c = zh["client"]
    tok = Tokenizer.from_file(str(zh["e5_dir"] / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    max_seq = json.loads((zh["e5_dir"] / "sentence_bert_config.json").read_text())["max_seq_length"]
    prefix = len(tok.encode("passage: ", add_special_tokens=False).ids)
    cap = min(Settings.model_fields["chunk_tokens"].default, max_seq - prefix - 2)
    assert cap > 100

    checked = 0
    for collection, doc_id in (("zhcn", zh["pdf_doc"]), ("zhtw", zh["tw_doc"])):
        chunks = chunks_of(c, collection, doc_id)
        assert len(chunks) >= 3
        for ch in chunks:
            n = len(tok.encode(ch["text"], add_special_tokens=False).ids)
            assert ch["token_count"] == n, (ch["id"], ch["token_count"], n)
            assert n <= cap, (ch["id"], n, cap)
            checked += 1
    # the cap is actually reached: chunks are packed, not one per line
    assert max(ch["token_count"] for ch in chunks_of(c, "zhcn", zh["pdf_doc"])) > cap // 2
    assert checked > 20


def test_dedupe_and_collection_isolation(zh):
    c = zh["client"]
    page = (FAQ / "zh-cn" / "basic-defs.zh-cn.html").read_bytes()
    other = (FAQ / "zh-cn" / "kernel.zh-cn.html").read_bytes()
    for name in ("dup-a", "dup-b"):
        assert c.post("/v1/collections", json={"name": name}).status_code == 201

    (first,) = ingest(c, "dup-a", ("basic-defs.zh-cn.html", page))
    assert not first["progress"].get("duplicate")
    (second,) = ingest(c, "dup-a", ("copy-of-basic-defs.html", page))
    assert second["document_id"] == first["document_id"]
    assert second["progress"].get("duplicate") is True
    docs_a = c.get("/v1/collections/dup-a/documents").json()["documents"]
    assert [d["id"] for d in docs_a] == [first["document_id"]]

    # another collection stores its own copy, and a document of its own
    (in_b,) = ingest(c, "dup-b", ("basic-defs.zh-cn.html", page))
    (kernel_b,) = ingest(c, "dup-b", ("kernel.zh-cn.html", other))
    assert in_b["document_id"] != first["document_id"]
    assert not in_b["progress"].get("duplicate")
    ids_a = {ch["id"] for ch in chunks_of(c, "dup-a", first["document_id"])}
    ids_b = {ch["id"] for ch in chunks_of(c, "dup-b", in_b["document_id"])}
    assert ids_a and ids_b and not ids_a & ids_b
    # a document of one collection is not reachable through the other
    assert c.get(f"/v1/collections/dup-a/documents/{in_b['document_id']}").status_code == 404
    assert c.get(f"/v1/collections/dup-b/documents/{first['document_id']}/chunks").status_code == 404

    for query in ("Debian GNU/Linux 是什么", "Debian 使用什么内核", "Linux 内核"):
        for col, allowed in (("dup-a", {first["document_id"]}),
                             ("dup-b", {in_b["document_id"], kernel_b["document_id"]})):
            results = search(c, col, query, k=20)
            assert results
            assert {r["document_id"] for r in results} <= allowed, (col, query)
    kernel_chunks = {ch["id"] for ch in chunks_of(c, "dup-b", kernel_b["document_id"])}
    assert not {r["chunk_id"] for r in search(c, "dup-a", "Debian 使用什么内核", k=50)} & kernel_chunks


def test_delete_and_reupload_leave_no_stale_chunks(zh):
    c, data_dir = zh["client"], zh["data_dir"]
    assert c.post("/v1/collections", json={"name": "del"}).status_code == 201
    kernel = (FAQ / "kernel.en.html").read_bytes()
    keep = (FAQ / "redistributing.en.html").read_bytes()
    phrase = "modprobe"  # only in kernel.en.html
    assert phrase.encode() in kernel and phrase.encode() not in keep
    doc_query = "How do I build a custom Linux kernel from source for Debian?"

    jobs = ingest(c, "del", ("kernel.en.html", kernel), ("redistributing.en.html", keep))
    victim, kept = jobs[0]["document_id"], jobs[1]["document_id"]
    old_ids = {ch["id"] for ch in chunks_of(c, "del", victim)}
    assert old_ids
    assert any(r["document_id"] == victim for r in search(c, "del", phrase, k=3))
    assert old_ids <= assert_three_stores_agree(data_dir, c, "del")

    assert c.delete(f"/v1/collections/del/documents/{victim}").status_code == 204
    assert error_code(c.get(f"/v1/collections/del/documents/{victim}")) == "document_not_found"
    assert c.delete(f"/v1/collections/del/documents/{victim}").status_code == 404
    for query in (phrase, doc_query, "kernel"):
        results = search(c, "del", query, k=50)
        assert all(r["document_id"] == kept for r in results), query
    with closing(db_ro(data_dir)) as conn:
        marks = ",".join("?" * len(old_ids))
        for table, col in (("chunks", "id"), ("chunk_vectors", "chunk_id"), ("chunk_terms", "chunk_id")):
            n = conn.execute(f"SELECT count(*) FROM {table} WHERE {col} IN ({marks})", tuple(old_ids)).fetchone()[0]
            assert n == 0, f"{n} rows of the deleted document left in {table}"
        assert conn.execute("SELECT count(*) FROM documents WHERE id = ?", (victim,)).fetchone()[0] == 0
    ids = assert_three_stores_agree(data_dir, c, "del")
    assert not ids & old_ids
    assert ids == {ch["id"] for ch in chunks_of(c, "del", kept)}

    # the same file again: a new document (not a duplicate of the deleted one), new chunk ids
    (again,) = ingest(c, "del", ("kernel.en.html", kernel))
    assert not again["progress"].get("duplicate")
    new_doc = again["document_id"]
    assert new_doc not in (victim, kept)
    new_ids = {ch["id"] for ch in chunks_of(c, "del", new_doc)}
    assert len(new_ids) == len(old_ids) and not new_ids & old_ids
    results = search(c, "del", phrase, k=50)
    assert results[0]["document_id"] == new_doc
    assert not {r["chunk_id"] for r in results} & old_ids
    ids = assert_three_stores_agree(data_dir, c, "del")
    assert not ids & old_ids and new_ids <= ids


def test_collections_api(zh):
    c, data_dir = zh["client"], zh["data_dir"]
    resp = c.post("/v1/collections", json={"name": "e2e-coll", "description": "made by a test"})
    assert resp.status_code == 201 and resp.json()["name"] == "e2e-coll"
    assert "e2e-coll" in {x["name"] for x in c.get("/v1/collections").json()["collections"]}

    resp = c.post("/v1/collections", json={"name": "e2e-coll"})
    assert resp.status_code == 409 and error_code(resp) == "collection_exists"
    for bad in ("bad name!", "../etc", "-leading-dash", "x" * 65, "名字", ""):
        resp = c.post("/v1/collections", json={"name": bad})
        assert resp.status_code == 400 and error_code(resp) == "invalid_collection_name", (bad, resp.text)

    (job,) = ingest(c, "e2e-coll", ("kernel.en.html", (FAQ / "kernel.en.html").read_bytes()))
    uid = collection_info(c, "e2e-coll")["uid"]
    saved_faiss_ids(data_dir, uid, sqlite_chunk_ids(data_dir, "e2e-coll")[0])  # its index is on disk
    assert c.delete("/v1/collections/e2e-coll").status_code == 204
    assert "e2e-coll" not in {x["name"] for x in c.get("/v1/collections").json()["collections"]}
    assert not (data_dir / "indexes" / uid).exists()
    with closing(db_ro(data_dir)) as conn:
        assert conn.execute("SELECT count(*) FROM chunks WHERE collection = 'e2e-coll'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM documents WHERE collection = 'e2e-coll'").fetchone()[0] == 0
    assert c.get(f"/v1/jobs/{job['id']}").status_code == 200  # jobs are history

    resp = c.delete("/v1/collections/default")
    assert resp.status_code == 409 and error_code(resp) == "collection_protected"
    for method, path, kwargs in (
        ("DELETE", "/v1/collections/e2e-coll", {}),
        ("GET", "/v1/collections/e2e-coll/documents", {}),
        ("POST", "/v1/collections/nope/search", {"json": {"query": "x", "k": 3}}),
        ("POST", "/v1/collections/nope/documents", {"files": [("files", ("a.txt", b"hello", "text/plain"))]}),
        ("GET", "/v1/collections/nope/documents/1", {}),
        ("GET", "/v1/collections/nope/documents/1/chunks", {}),
        ("DELETE", "/v1/collections/nope/documents/1", {}),
    ):
        resp = c.request(method, path, **kwargs)
        assert resp.status_code == 404 and error_code(resp) == "collection_not_found", (method, path, resp.text)
    assert error_code(c.get("/v1/collections/default/documents/987654")) == "document_not_found"
    assert error_code(c.get("/v1/jobs/0123456789abcdef0123456789abcdef")) == "job_not_found"


# --------------------------------------------------------------------------- hostile uploads


def _truncated_pdf() -> bytes:
    data = gzip.decompress(FAQ_EN_PDF.read_bytes())
    return data[:90_000]


def _encrypted_pdf() -> bytes:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(make_pdf([text_stream("Secret minutes of the board meeting.")])))
    writer = pypdf.PdfWriter()
    writer.append(reader)
    writer.encrypt(user_password="user-pw", owner_password="owner-pw", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _blank_pdf() -> bytes:
    import pypdf

    writer = pypdf.PdfWriter()
    writer.add_blank_page(612, 792)
    writer.add_blank_page(612, 792)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _nested_bomb_pdf() -> bytes:
    """2 GiB of zeros behind two Flate layers, in a few KB."""
    return make_pdf([zlib.compress(zlib_zeros(2 << 30), 9)], raw_filter=b"[/FlateDecode /FlateDecode]")


GBK_PHRASE = "全功能的：Debian 目前包含了超过 59100 个软件包"
BIG5_PHRASE = "tmpfs是一個臨時檔案系統"

# name -> (how to send, expected): expected is ("upload", status, code), ("job", code) or ("done",)
HOSTILE_CASES = {
    "truncated_pdf": (lambda: [("faq-cut.pdf", _truncated_pdf())], ("job", "pdf_malformed")),
    "flate_bomb": (lambda: [("bomb.pdf", make_pdf([zlib_zeros(80 << 20)], raw_filter=b"/FlateDecode"))],
                   ("job", "pdf_resource_limit")),
    "nested_flate_bomb": (lambda: [("bomb2.pdf", _nested_bomb_pdf())], ("job", "pdf_resource_limit")),
    "empty_file": (lambda: [("empty.txt", b"")], ("upload", 422, "empty_file")),
    "gbk_text": (lambda: [("faq-ch1-gbk.txt", faq_zh_excerpt().encode("gbk"))], ("done",)),
    "big5_text": (lambda: [("ref-1.2-big5.txt", big5_bytes(zh_tw_excerpt()))], ("done",)),
    "traversal_slash": (lambda: [("../evil.txt", b"evil content")], ("upload", 400, "bad_filename")),
    "traversal_backslash": (lambda: [("..\\evil.txt", b"evil content")], ("upload", 400, "bad_filename")),
    "traversal_deep": (lambda: [("../../../../../../tmp/evil.txt", b"evil")], ("upload", 400, "bad_filename")),
    "nul_in_name": (lambda: ("raw", b"evil\x00.txt"), ("upload", 400, "bad_filename")),
    "long_name": (lambda: [("n" * 10_000 + ".txt", b"a long name")], ("upload", 400, "bad_filename")),
    "long_name_under_header_limit": (lambda: [("n" * 1_000 + ".txt", b"a long name")],
                                     ("upload", 400, "bad_filename")),
    "exe": (lambda: [("x.exe", b"MZ\x90\x00" + bytes(200))], ("upload", 415, "unsupported_type")),
    "png_renamed_txt": (lambda: [("notes.txt", (FAQ / "images" / "note.png").read_bytes())],
                        ("upload", 415, "unsupported_type")),
    "too_large": (lambda: [("faq.en.txt", gzip.decompress(FAQ_EN_TXT.read_bytes()))],
                  ("upload", 413, "file_too_large")),
    "encrypted_pdf": (lambda: [("locked.pdf", _encrypted_pdf())], ("job", "pdf_encrypted")),
    "blank_pdf": (lambda: [("scan.pdf", _blank_pdf())], ("job", "pdf_no_text")),
    # a folder dropped with bad files in it: the good ones are queued, each bad one reported
    "batch_with_bad_files": (lambda: [("fine.txt", b"A perfectly fine note about apt pinning."),
                                      ("../evil.txt", b"evil"), ("empty.md", b""),
                                      ("x.exe", b"MZ\x90\x00" + bytes(200))],
                             ("mixed", [("../evil.txt", "bad_filename"), ("empty.md", "empty_file"),
                                        ("x.exe", "unsupported_type")])),
    # ... unless the client asks for all or nothing: then the good file beside a bad one gets no job
    "batch_all_or_nothing": (lambda: [("also-fine.txt", b"Another fine note about apt pinning."),
                                      ("../evil.txt", b"evil")], ("upload", 400, "bad_filename")),
}
PARAMS = {"batch_all_or_nothing": {"all_or_nothing": "true"}}

GOOD = {"faq-ch1-gbk.txt", "ref-1.2-big5.txt", "fine.txt"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, models_dir, small_embedder_dir):
    root = tmp_path_factory.mktemp("e2e-hostile")
    cwd = root / "cwd"
    cwd.mkdir()
    server = Server(root / "state", cwd=cwd, log=root / "server.log", env={
        "RAG_MODEL_CACHE_DIR": str(models_dir),
        "RAG_LOAD_GENERATOR": "false",
        "RAG_EMBEDDER": "all-minilm-l6-v2",
        "RAG_MAX_UPLOAD_BYTES": "100000",
    })
    server.start()
    client = server.client()
    outcomes: dict[str, dict] = {}
    try:
        assert client.post("/v1/collections", json={"name": "hostile"}).status_code == 201
        for name, (make, _) in HOSTILE_CASES.items():
            files = make()
            if isinstance(files, tuple) and files[0] == "raw":
                resp = upload_raw(client, "hostile", files[1], b"evil content")
            else:
                for _, data in files:
                    assert len(data) > 100_000 if name == "too_large" else len(data) <= 100_000, name
                resp = upload(client, "hostile", *files, **PARAMS.get(name, {}))
            out = {"status": resp.status_code, "code": error_code(resp), "body": resp.json(), "jobs": []}
            if resp.status_code == 202:
                out["jobs"] = [wait_job(client, j["id"]) for j in resp.json()["jobs"]]
            out["health"] = client.get("/health").status_code
            outcomes[name] = out
        yield {"server": server, "client": client, "root": root, "cwd": cwd, "data_dir": server.data_dir,
               "outcomes": outcomes}
    finally:
        client.close()
        server.stop()


@pytest.mark.parametrize("case", list(HOSTILE_CASES))
def test_hostile_input_gets_its_specific_error(hostile, case):
    out = hostile["outcomes"][case]
    expected = HOSTILE_CASES[case][1]
    assert out["health"] == 200, "/health did not answer after this upload"
    if expected[0] == "upload":
        _, status, code = expected
        assert (out["status"], out["code"]) == (status, code), out["body"]
        assert out["body"]["error"]["message"]
        return
    assert out["status"] == 202, out["body"]
    if expected[0] == "mixed":
        refused = [(r["filename"], r["error"]["code"]) for r in out["body"]["rejected"]]
        assert refused == expected[1] and all(r["error"]["message"] for r in out["body"]["rejected"])
        (job,) = out["jobs"]
        assert job["status"] == "done" and job["filename"] == "fine.txt", job
        return
    assert out["body"]["rejected"] == []
    (job,) = out["jobs"]
    if expected[0] == "job":
        assert job["status"] == "failed" and job["document_id"] is None, job
        assert job["error"]["code"] == expected[1], job["error"]
    else:
        assert job["status"] == "done" and job["error"] is None, job


def test_legacy_encodings_are_searchable(hostile):
    c = hostile["client"]
    docs = {d["filename"]: d for d in c.get("/v1/collections/hostile/documents").json()["documents"]}
    assert docs["faq-ch1-gbk.txt"]["encoding"].lower() in ("gbk", "gb18030", "gb2312")
    assert docs["ref-1.2-big5.txt"]["encoding"].lower() in ("big5", "big5hkscs", "cp950")
    for filename, phrase, query in (
        ("faq-ch1-gbk.txt", GBK_PHRASE, "全功能的 Debian 包含超过 59100 个软件包，用户可以选择安装哪些软件包"),
        ("ref-1.2-big5.txt", BIG5_PHRASE, "臨時檔案系統 tmpfs"),
    ):
        results = search(c, "hostile", query, k=3)
        assert any(r["document_id"] == docs[filename]["id"] and squash(phrase) in squash(r["text"])
                   for r in results), (filename, [r["text"][:60] for r in results])


def test_failed_uploads_leave_no_trace(hostile):
    c, root, data_dir = hostile["client"], hostile["root"], hostile["data_dir"]
    assert c.get("/health").status_code == 200
    docs = c.get("/v1/collections/hostile/documents").json()["documents"]
    assert {d["filename"] for d in docs} == GOOD
    good_ids = {d["id"] for d in docs}
    for d in docs:
        assert c.get(f"/v1/collections/hostile/documents/{d['id']}/chunks").json()["chunks"]

    with closing(db_ro(data_dir)) as conn:
        assert {r["filename"] for r in conn.execute("SELECT filename FROM documents")} == GOOD
        assert {r[0] for r in conn.execute("SELECT DISTINCT document_id FROM chunks")} == good_ids
        assert conn.execute("SELECT count(*) FROM chunk_vectors v LEFT JOIN chunks c ON c.id = v.chunk_id "
                            "WHERE c.id IS NULL").fetchone()[0] == 0
        jobs = {r["filename"]: dict(r) for r in conn.execute("SELECT * FROM ingestion_jobs")}
        # refused uploads never became jobs; parsed-and-failed ones have no document
        assert "also-fine.txt" not in jobs and not any("evil" in name for name in jobs)
        for job in jobs.values():
            if job["filename"] in GOOD:
                assert job["status"] == "done" and job["document_id"] in good_ids
            else:
                assert job["status"] == "failed" and job["document_id"] is None and job["error_code"], job
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert_three_stores_agree(data_dir, c, "hostile")

    # nothing outside the data dir, nothing left over inside it
    assert list((data_dir / "uploads").iterdir()) == []
    assert {p.name for p in data_dir.iterdir()} <= {"rag.sqlite3", "rag.sqlite3-wal", "rag.sqlite3-shm",
                                                    "indexes", "uploads", "admin.key", "auth.secret",
                                                    ".in-use"}  # the data dir's lock (rag.store.datadir_lock)
    uids = {col["uid"] for col in c.get("/v1/collections").json()["collections"]}
    assert {p.name for p in (data_dir / "indexes").iterdir()} <= uids
    assert list(hostile["cwd"].iterdir()) == [], "the server wrote into its working directory"
    assert {p.name for p in root.iterdir()} == {"cwd", "state", "server.log"}
    everything = [p for p in root.rglob("*")]
    assert not [p for p in everything if "evil" in p.name]
    for place in (Path.cwd(), root.parent, root.parent.parent, Path("/tmp")):
        assert not (place / "evil.txt").exists(), place


def test_office_formats_through_the_server_with_sheet_row_and_slide_in_their_citations(zh):
    """#26: a spreadsheet row is found with its sheet (section path, page) and its row; a slide with
    its number and title; an unsupported type's message lists the new formats."""
    from tests import helpers_formats as fm

    client = zh["client"]
    assert client.post("/v1/collections", json={"name": "office"}).status_code == 201
    jobs = ingest(client, "office", ("端口.xlsx", fm.xlsx_bytes()), ("deck.pptx", fm.pptx_bytes()),
                  ("手册.docx", fm.docx_bytes()), ("通知.eml", fm.eml_bytes()))
    docs = {d["filename"]: d for d in client.get("/v1/collections/office/documents").json()["documents"]}
    assert docs["端口.xlsx"]["page_count"] == 2 and docs["deck.pptx"]["page_count"] == 3
    assert {docs[j["filename"]]["format"] for j in jobs} == {"xlsx", "pptx", "docx", "eml"}

    hits = search(client, "office", "postgres 用哪个端口", k=3)
    row = next(h for h in hits if h["filename"] == "端口.xlsx")
    assert row["section_path"] == ["端口"] and row["page"] == 1
    assert "row 4: 端口: 5432 | 服务: postgres" in row["text"]

    hits = search(client, "office", "伺服器清單 db1 用途", k=3)
    slide = next(h for h in hits if h["filename"] == "deck.pptx")
    assert slide["page"] == 2 and slide["section_path"] == ["Slide 2: 伺服器清單"]

    resp = upload(client, "office", ("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)))
    assert resp.status_code == 415 and error_code(resp) == "unsupported_type"
    assert ".docx" in resp.json()["error"]["message"] and ".xlsx" in resp.json()["error"]["message"]
