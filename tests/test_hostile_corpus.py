"""The hostile corpus (issue #12) against one real `rag serve`: 300+ generated uploads (PDF bombs,
cycles, deep nesting, lying cross-reference tables, truncations, encryption; text in every
encoding and none; binary under text names; HTML and Markdown bombs; degenerate documents;
hostile file names; multipart abuse), built by `tests.hostile_files`.

For every case: the answer is 202 or a 4xx whose code is on the documented allow-list below; a
202's jobs end within `JOB_TIMEOUT` with `done` or a documented failure code (never
`internal_error`); nothing answers 5xx; `/health` answers 200 after each case; the server and its
children (PDF workers, the embedding process) stay under `MAX_RSS_BYTES` all along. Where the
outcome is certain the case names its code (a bomb is `pdf_resource_limit`, a password is
`pdf_encrypted`, a path is `bad_filename` ...). A `done` text document must spell the text that
was encoded (no mojibake stored as done). At the end the database holds exactly the documents of
the `done` jobs and nothing of any failed one, and SQLite, FAISS and the uploads folder agree.

One summary line (cases, outcomes by code, RSS, seconds) is printed at the end of the run and
written to `summary.txt` beside the server log, with every case's outcome in `outcomes.json`. The
whole file takes about 6-7 minutes on the shared 2-core machine (the HTML bombs are most of it).
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from ingest.errors import ERROR_STATUS
from ingest.normalize import normalize_text
from tests import hostile_files as hf
from tests.server import Server
from tests.test_e2e_ingest import assert_three_stores_agree, db_ro, error_code, squash, upload

COLLECTION = "hostile"

#: Every job ends within this: the PDF worker's wall-clock limit (15 s) plus the embedding limit
#: (60 s), with room for a loaded 2-core machine.
JOB_TIMEOUT = 120.0

#: The server process and all its children together (a child forked but not yet exec'd is not
#: counted twice). Measured on the shared 2-core machine: 0.56 GB idle, 1.9-2.1 GB at most (the
#: server 1.3-1.5 GB after the HTML bombs, the embedding process 0.6 GB, a PDF worker 0.26 GB; the
#: worker is capped at 512 MB of address space).
MAX_RSS_BYTES = 2_560 * 1024 * 1024

#: Documented codes an upload may be refused with (README's error table, `ingest.errors`).
UPLOAD_CODES = frozenset({
    "bad_filename", "file_too_large", "unsupported_type", "empty_file", "pdf_malformed",
    "too_many_files", "body_too_large", "invalid_request", "no_files", "document_malformed",
})
#: Documented codes a job may fail with. Never `internal_error`.
JOB_CODES = frozenset({
    "undecodable_text", "empty_file", "no_text", "pdf_malformed", "pdf_encrypted", "pdf_no_text",
    "pdf_too_many_pages", "pdf_resource_limit", "document_too_long", "too_many_chunks", "repetitive_text",
    "embed_time_limit",
    "document_malformed", "document_encrypted", "archive_limit", "xml_forbidden", "sheet_too_large",
    "too_many_attachments", "attachments_too_deep", "parse_resource_limit", "image_too_large", "ocr_too_many_pages",
    "ocr_time_limit",
})

#: Cases that show a bug outside the files this test's author may change: they fail today, and
#: `strict` makes them fail again (XPASS) once fixed, so this list is kept honest.
KNOWN_BUGS = {
    "text/cp500-ebcdic/en": "ingest/decode.py: EBCDIC (cp500) English is decoded as cp866 and stored as "
                            "Cyrillic mojibake ('уИЕ@ЧБГТБЗЕ@...'), not refused",
    "binary/random-a1-fe-bytes.txt": "ingest/decode.py: 4 KB of random bytes 0xA1-0xFE are decoded as cp1251 "
                                     "and stored as done",
    "binary/random-a1-fe-bytes.html": "ingest/decode.py: 200 random bytes 0xA1-0xFE under .html are decoded "
                                      "as cp1251 and stored as done",
    **dict.fromkeys(("filename/windows-drive-path", "filename/windows-drive-path-escaped"),
                    "python-multipart (request.form in api/documents.py) cuts an IE-style drive path "
                    "'C:\\Windows\\x.txt' to 'x.txt' before ingest.detect.clean_filename sees it: the path "
                    "is stored under its last part instead of being refused with bad_filename"),
}


# --------------------------------------------------------------------------- sending


@dataclass
class Outcome:
    status: int | None  # of the upload request; None: the server closed without answering
    code: str | None  # error code of a refused request
    body: object
    jobs: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    health: int = 0
    rss: int = 0  # the most RSS seen while the case ran, all processes together
    rss_by_role: dict[str, int] = field(default_factory=dict)  # the most of each kind of process

    @property
    def results(self) -> list[str]:
        """One outcome per file: "done", the job's error code, the refusal's code, or "no_response"."""
        if self.status is None:
            return ["no_response"]
        if self.status != 202:
            return [self.code or f"http_{self.status}"]
        return ["done" if j["status"] == "done" else (j.get("error") or {}).get("code") or j["status"] for j in self.jobs]


def send_raw(server: Server, key: str, req: hf.RawRequest, timeout: float = 60) -> tuple[int | None, object]:
    """Sends `req` on a plain socket, so that Content-Length may lie and the body may stop short;
    stops sending as soon as the server answers (a 413 before the body is read)."""
    length = len(req.body) if req.content_length is None else req.content_length
    head = [f"POST /v1/collections/{COLLECTION}/documents HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
            f"Authorization: Bearer {key}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in req.headers.items()]
    head.append("Transfer-Encoding: chunked" if req.chunked else f"Content-Length: {length}")
    if req.chunked:
        body = b"".join(b"%x\r\n" % len(req.body[i:i + 65536]) + req.body[i:i + 65536] + b"\r\n"
                        for i in range(0, len(req.body), 65536)) + b"0\r\n\r\n"
    else:
        body = req.body
    data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    response = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        try:
            for i in range(0, len(data), 65536):
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered early
                sock.sendall(data[i:i + 65536])
            if req.close_after_body:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := sock.recv(65536):
                response += chunk
        except (ConnectionResetError, TimeoutError, socket.timeout):
            pass
    if not response:
        return None, None
    status = int(response.split(b" ", 2)[1])
    payload = response.partition(b"\r\n\r\n")[2]
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload[:500]


def upload_named(client: httpx.Client, files: list[tuple[str | bytes, bytes]]) -> httpx.Response:
    if all(isinstance(name, str) for name, _ in files):
        return upload(client, COLLECTION, *files)
    body, content_type = hf.raw_multipart([(n if isinstance(n, bytes) else n.encode(), d) for n, d in files])
    return client.post(f"/v1/collections/{COLLECTION}/documents", content=body, headers={"content-type": content_type})


def wait_jobs(client: httpx.Client, ids: list[str], deadline: float) -> list[dict]:
    out = []
    for job_id in ids:
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("done", "failed", "cancelled"):
                out.append(job)
                break
            if time.monotonic() > deadline:
                out.append({**job, "status": "timeout"})
                break
            time.sleep(0.1)
    return out


class RssWatch:
    """Samples the RSS of a process and all its descendants every 50 ms, in a thread; keeps the
    largest sum, and the largest RSS of each kind of process (server, PDF worker, embedder)."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.peak = 0  # since the last `reset`
        self.max = 0
        self.by_role: Counter[str] = Counter()
        self.peak_by_role: Counter[str] = Counter()  # since the last `reset`
        self._cmdline = " ".join(self.proc.cmdline())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _role(self, p: psutil.Process) -> str:
        if p.pid == self.proc.pid:
            return "server"
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            return "other"
        if cmd == self._cmdline:
            return "fork"  # forked by the server, not yet exec'd: its pages are the server's
        return "pdf_worker" if "pdf_worker" in cmd else "embedder" if "embed" in cmd else "other"

    def total(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            role = self._role(p)
            if role == "fork":
                continue
            total += rss
            self.by_role[role] = max(self.by_role[role], rss)
            self.peak_by_role[role] = max(self.peak_by_role[role], rss)
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                now = self.total()
            except psutil.Error:
                continue
            self.peak = max(self.peak, now)
            self.max = max(self.max, now)

    def reset(self) -> None:
        self.peak_by_role.clear()
        self.peak = self.total()

    def __enter__(self) -> "RssWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def run_case(server: Server, client: httpx.Client, case: hf.Case, rss: RssWatch) -> Outcome:
    rss.reset()
    t0 = time.monotonic()
    if case.request is not None:
        status, body = send_raw(server, server.admin_key, case.request())
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        out = Outcome(status, code, body)
    else:
        resp = upload_named(client, case.files())
        try:
            body = resp.json()
        except ValueError:
            body = resp.text[:500]
        out = Outcome(resp.status_code, error_code(resp), body)
    if out.status == 202:
        out.jobs = wait_jobs(client, [j["id"] for j in out.body["jobs"]], t0 + JOB_TIMEOUT)
    out.seconds = time.monotonic() - t0
    out.health = client.get("/health").status_code
    out.rss = max(rss.peak, rss.total())
    out.rss_by_role = dict(rss.peak_by_role)
    return out


# --------------------------------------------------------------------------- the run

CASES = hf.corpus()


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, models_dir, small_embedder_dir):
    root = tmp_path_factory.mktemp("hostile-corpus")
    cwd = root / "cwd"
    cwd.mkdir()
    server = Server(root / "state", cwd=cwd, log=root / "server.log",
                    env={"RAG_MODEL_CACHE_DIR": str(models_dir), **hf.SERVER_ENV})
    server.start()
    client = server.client(timeout=120)
    outcomes: dict[str, Outcome] = {}
    t0 = time.monotonic()
    try:
        assert client.post("/v1/collections", json={"name": COLLECTION}).status_code == 201
        with RssWatch(server.proc.pid) as rss:
            idle_rss = rss.total()
            for case in CASES:
                outcomes[case.id] = run_case(server, client, case, rss)
                assert server.proc.poll() is None, f"the server died on {case.id}"
        (root / "outcomes.json").write_text(json.dumps(
            {cid: {"results": o.results, "seconds": round(o.seconds, 2), "rss_mb": o.rss >> 20, "status": o.status,
                   "rss_by_role_mb": {k: v >> 20 for k, v in o.rss_by_role.items()},
                   "body": o.body if o.status != 202 else None, "errors": [j.get("error") for j in o.jobs]}
             for cid, o in outcomes.items()}, ensure_ascii=False, indent=1, default=str))
        yield {"server": server, "client": client, "root": root, "cwd": cwd, "outcomes": outcomes,
               "seconds": time.monotonic() - t0, "max_rss": rss.max, "idle_rss": idle_rss, "rss_by_role": rss.by_role}
    finally:
        client.close()
        server.stop()


def _param(case: hf.Case):
    marks = []
    if case.id in KNOWN_BUGS:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case.id]))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case_ends_in_its_documented_outcome(corpus_run, case):
    out = corpus_run["outcomes"][case.id]
    assert out.health == 200, "/health did not answer 200 after this case"
    assert out.rss <= MAX_RSS_BYTES, f"RSS {out.rss >> 20} MB over the {MAX_RSS_BYTES >> 20} MB bound"
    assert out.status is None or out.status < 500, out.body
    if out.status is not None and out.status != 202:
        assert out.code in UPLOAD_CODES, f"undocumented refusal {out.status} {out.body}"
        assert ERROR_STATUS.get(out.code, out.status) == out.status, out.body
        assert out.body["error"]["message"], out.body
    for job in out.jobs:
        assert job["status"] != "timeout", f"job still {job} after {JOB_TIMEOUT:.0f} s"
        if job["status"] == "done":
            assert job["error"] is None and job["document_id"] is not None, job
        else:
            assert job["status"] == "failed" and job["document_id"] is None, job
            assert job["error"]["code"] in JOB_CODES, job["error"]
            assert job["error"]["message"], job
    assert set(out.results) <= case.expect, f"{out.results} not in {sorted(case.expect)}: {out.body} {out.jobs}"
    assert out.seconds <= JOB_TIMEOUT + 30, out.seconds
    if case.text is not None:
        # no mojibake stored as done: a .txt in an encoding spells exactly its text; others contain it
        exact = case.category == "encoding" and str(case.files()[0][0]).endswith(".txt")
        want = squash(normalize_text(case.text))
        for job in out.jobs:
            if job["status"] == "done":
                stored = squash(stored_text(corpus_run["client"], job["document_id"]))
                assert (stored == want) if exact else (want in stored), (stored[:200], want[:200])


def stored_text(client: httpx.Client, document_id: int) -> str:
    chunks = client.get(f"/v1/collections/{COLLECTION}/documents/{document_id}/chunks").json()["chunks"]
    return "".join(ch["text"] for ch in chunks)


# --------------------------------------------------------------------------- what was stored


def _done_documents(corpus_run) -> dict[str, list[int]]:
    return {cid: [j["document_id"] for j in out.jobs if j["status"] == "done"] for cid, out in corpus_run["outcomes"].items()}


def test_done_documents_keep_their_clean_file_names(corpus_run):
    c = corpus_run["client"]
    docs = {d["id"]: d for d in c.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]}
    wrong = []
    for case in CASES:
        if case.stored_name is None:
            continue
        for doc_id in _done_documents(corpus_run)[case.id]:
            if docs[doc_id]["filename"] != case.stored_name:
                wrong.append((case.id, docs[doc_id]["filename"], case.stored_name))
    assert not wrong, wrong


def test_the_database_holds_exactly_the_done_documents(corpus_run):
    c, server = corpus_run["client"], corpus_run["server"]
    data_dir = server.data_dir
    done_ids = {d for ids in _done_documents(corpus_run).values() for d in ids}
    api_docs = {d["id"] for d in c.get(f"/v1/collections/{COLLECTION}/documents").json()["documents"]}
    assert api_docs == done_ids
    all_jobs = [j for out in corpus_run["outcomes"].values() for j in out.jobs]
    with closing(db_ro(data_dir)) as conn:
        assert {r[0] for r in conn.execute("SELECT id FROM documents")} == done_ids
        assert {r[0] for r in conn.execute("SELECT DISTINCT document_id FROM chunks")} == done_ids
        assert conn.execute("SELECT count(*) FROM chunk_vectors v LEFT JOIN chunks c ON c.id = v.chunk_id "
                            "WHERE c.id IS NULL").fetchone()[0] == 0
        rows = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM ingestion_jobs")}
        assert set(rows) == {j["id"] for j in all_jobs}, "a refused upload became a job, or a job is missing"
        for job in all_jobs:
            row = rows[job["id"]]
            assert row["status"] == job["status"], (row, job)
            if row["status"] == "done":
                assert row["document_id"] in done_ids
            else:
                assert row["document_id"] is None and row["error_code"] in JOB_CODES, row
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert_three_stores_agree(data_dir, c, COLLECTION)
    assert list((data_dir / "uploads").iterdir()) == [], "uploads of finished jobs were left behind"
    assert list(corpus_run["cwd"].iterdir()) == [], "the server wrote into its working directory"
    assert not [p for p in corpus_run["root"].rglob("*") if "evil" in p.name]


def test_summary(corpus_run, request):
    outcomes = corpus_run["outcomes"]
    files = sum(len(o.results) for o in outcomes.values())
    by_code = Counter(r for o in outcomes.values() for r in o.results)
    by_category = Counter(c.category for c in CASES)
    slowest = max(outcomes.items(), key=lambda kv: kv[1].seconds)
    line = (f"hostile corpus: {len(outcomes)} cases ({files} files; "
            + ", ".join(f"{k} {v}" for k, v in sorted(by_category.items()))
            + f") in {corpus_run['seconds']:.0f} s (slowest {slowest[0]} {slowest[1].seconds:.1f} s); outcomes: "
            + ", ".join(f"{k} {v}" for k, v in by_code.most_common())
            + f"; RSS idle {corpus_run['idle_rss'] >> 20} MB, max {corpus_run['max_rss'] >> 20} MB "
            f"(bound {MAX_RSS_BYTES >> 20} MB; largest single process: "
            + ", ".join(f"{k} {v >> 20} MB" for k, v in sorted(corpus_run["rss_by_role"].items()) if v) + ")")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)
    (corpus_run["root"] / "summary.txt").write_text(line + "\n", encoding="utf-8")
    assert len(outcomes) >= 200 and corpus_run["max_rss"] <= MAX_RSS_BYTES
    assert not [o for o in outcomes.values() if o.status is not None and o.status >= 500]
    assert corpus_run["server"].proc.poll() is None


# --------------------------------------------------------------------------- the allow-list is the documented one


def _readme_codes() -> set[str]:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    table = readme.read_text(encoding="utf-8").split("Every error is `{\"error\"", 1)[1].split("\n\n", 2)[1]
    return {code for row in table.splitlines() if row.startswith("| `")
            for code in re.findall(r"`([a-z_]+)`", row.split("|")[1])}


def test_allowed_codes_are_documented():
    documented = _readme_codes() | set(ERROR_STATUS)
    assert UPLOAD_CODES | JOB_CODES <= documented, (UPLOAD_CODES | JOB_CODES) - documented
    assert "internal_error" not in JOB_CODES


def test_corpus_covers_the_issue():
    ids = " ".join(c.id for c in CASES)
    assert len(CASES) >= 200
    for needle in ("flate-bomb", "cycle-", "nested-arrays", "xref-claims-ten-million", "truncated/", "encrypted-RC4",
                   "encrypted-AES", "empty-user-pw", "blank-", "garbage-after-header", "utf-8-bom/", "utf-16-le-no-bom",
                   "utf-16-be-bom", "gb18030/", "gbk/", "big5/", "euc-jp/", "shift_jis/", "euc-kr/", "cp1252/", "koi8-r/",
                   "binary/png", "binary/zip", "binary/elf", "binary/gzip", "html/nested-div-100000", "amp-200k",
                   "attribute-2mb", "unclosed-comment", "unclosed-script", "table-50k-cells", "backticks-2mb",
                   "blockquotes-10k", "lists-10k", "unterminated-fence-1mb", "headings-20k", "one-line-", "one-word",
                   "rtl-override", "zero-width", "newline", "double-quote", "256-chars", "CON.txt", "hidden", "dot-dot",
                   "nfd-accents", "no-files-field", "files-as-string-field", "part-without-filename", "too-many-files",
                   "body-over-request-limit", "truncated-before-closing-boundary", "wrong-boundary", "missing-boundary",
                   "lying-content-length", "zip-bomb", "zip-3000-members", "billion-laughs-docx", "external-entity",
                   "million-empty-rows", "shared-strings-60mb", "nested-tables", "macro-enabled", "encrypted-docx",
                   "eml-500-attachments", "eml-nested-10-deep", "image-30000x30000", "tiff-10000-pages"):
        assert needle in ids, needle
    assert sum(1 for c in CASES if c.id.startswith("pdf/truncated/")) >= 20


# --------------------------------------------------------------------------- the parser fixes, without a server


def _parse_seconds(case_id: str):
    from ingest.parsers import parse_document
    from rag.errors import IngestError
    from rag.settings import Settings

    (case,) = [c for c in CASES if c.id == case_id]
    ((name, data),) = case.files()
    t0 = time.monotonic()
    try:
        doc = parse_document(data, name, Settings(max_upload_bytes=hf.MAX_UPLOAD_BYTES))
    except IngestError as exc:
        return time.monotonic() - t0, exc.code
    return time.monotonic() - t0, doc


def test_markdown_quote_nesting_is_linear():
    """2 MB of ">" cut one level at a time copied the rest of the line per level: hours."""
    seconds, doc = _parse_seconds("markdown/blockquotes-2m-nested")
    assert seconds < 10 and doc.text == "x"


def test_html_headers_nested_in_an_article_are_linear():
    """Each of 100,000 nested <header>s looked for an <article> among all its ancestors: hours."""
    seconds, doc = _parse_seconds("html/nested-header-in-article-100k")
    assert seconds < 30 and doc.text == "Deep text."


@pytest.mark.parametrize("name", ["a\x85b.txt", "\x9b31mred.txt", "a\u2028b.txt", "a\u2029b.txt", "a\x7fb.txt"])
def test_file_names_with_c1_controls_or_line_separators_are_refused(name):
    from ingest.detect import clean_filename
    from rag.errors import IngestError

    with pytest.raises(IngestError) as exc:
        clean_filename(name)
    assert exc.value.code == "bad_filename"
