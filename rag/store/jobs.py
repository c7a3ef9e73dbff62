"""The ingestion jobs table: one row per accepted upload, from `queued` to `done`, `failed` or `cancelled`.

A finished job never changes again. Successful completion normally happens inside
`documents.add_document`, in the same transaction as the document (`finish_job`).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any, Literal

from rag.errors import Conflict, NotFound
from rag.store.connection import Connection, Row
from rag.store.collections import get_collection
from rag.store.db import transaction, utcnow
from rag.store.dialect import dialect
from rag.store.records import JobRecord

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]


JOB_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")


FINISHED_JOB_STATUSES: tuple[str, ...] = ("done", "failed", "cancelled")



def _job(row: Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        collection=row["collection"],
        filename=row["filename"],
        status=row["status"],
        document_id=row["document_id"],
        progress=json.loads(row["progress"]),
        error_code=row["error_code"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def create_job(
    conn: Connection,
    collection: str,
    filename: str,
    *,
    job_id: str | None = None,
    progress: dict[str, Any] | None = None,
) -> JobRecord:
    """Creates a `queued` job (id: a random uuid4 unless given). The collection must exist."""
    job_id = job_id or str(uuid.uuid4())
    now = utcnow()
    with transaction(conn):
        get_collection(conn, collection)
        try:
            conn.execute(
                "INSERT INTO ingestion_jobs (id, collection, filename, status, progress, created_at, updated_at)"
                " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (job_id, collection, filename, json.dumps(progress or {}), now, now),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"job {job_id!r} already exists", code="job_exists") from None
        return get_job(conn, job_id)


def get_job(conn: Connection, job_id: str, *, lock: bool = False) -> JobRecord:
    """`lock`: inside a transaction, hold the row until it ends (Postgres `FOR UPDATE`; SQLite's
    transactions already hold the write lock), so a check of its status stays true until the write."""
    sql = "SELECT * FROM ingestion_jobs WHERE id = ?"
    if lock and dialect(conn) == "postgres":
        sql += " FOR UPDATE"
    row = conn.execute(sql, (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"job {job_id!r} does not exist", code="job_not_found")
    return _job(row)


def list_jobs(
    conn: Connection,
    collection: str | None = None,
    *,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[JobRecord]:
    """Newest first (ties by id: Postgres has no rowid)."""
    where, args = [], []
    if collection is not None:
        where.append("collection = ?")
        args.append(collection)
    if status is not None:
        where.append("status = ?")
        args.append(status)
    sql = "SELECT * FROM ingestion_jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    return [_job(r) for r in conn.execute(sql, (*args, int(limit), int(offset)))]


def update_job(
    conn: Connection,
    job_id: str,
    *,
    status: JobStatus | None = None,
    progress: dict[str, Any] | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    document_id: int | None = None,
) -> JobRecord:
    """Updates a job. `progress` replaces the stored JSON. Moving to `running` sets started_at,
    to `done`/`failed` sets finished_at. A finished job cannot change (`Conflict`, `job_finished`).
    Successful completion with a document normally happens inside `add_document`."""
    if status is not None and status not in JOB_STATUSES:
        raise ValueError(f"invalid job status {status!r}")
    with transaction(conn):
        job = get_job(conn, job_id, lock=True)
        if job.status in FINISHED_JOB_STATUSES:
            raise Conflict(f"job {job_id} is already {job.status}", code="job_finished")
        now = utcnow()
        sets, args = ["updated_at = ?"], [now]
        if status is not None:
            sets.append("status = ?")
            args.append(status)
            if status == "running" and job.started_at is None:
                sets.append("started_at = ?")
                args.append(now)
            if status in FINISHED_JOB_STATUSES:
                sets.append("finished_at = ?")
                args.append(now)
        if progress is not None:
            sets.append("progress = ?")
            args.append(json.dumps(progress))
        if error_code is not None:
            sets.append("error_code = ?")
            args.append(error_code)
        if error_message is not None:
            sets.append("error_message = ?")
            args.append(error_message)
        if document_id is not None:
            sets.append("document_id = ?")
            args.append(int(document_id))
        conn.execute(f"UPDATE ingestion_jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))
        if status in FINISHED_JOB_STATUSES:
            _drop_payload(conn, job_id)
        return get_job(conn, job_id)


def count_queued_jobs(conn: Connection) -> int:
    """Jobs waiting for a worker (the partial index `ingestion_jobs_unfinished` answers this)."""
    return int(conn.execute("SELECT count(*) FROM ingestion_jobs WHERE status = 'queued'").fetchone()[0])


def count_unfinished_jobs(conn: Connection, collections: list[str]) -> int:
    """Jobs queued or running in these collections: what a key limited to them may know of the queue."""
    if not collections:
        return 0
    marks = ", ".join("?" for _ in collections)
    return int(conn.execute(f"SELECT count(*) FROM ingestion_jobs WHERE status IN ('queued', 'running') "
                            f"AND collection IN ({marks})", tuple(collections)).fetchone()[0])


def recent_job_seconds(conn: Connection, n: int = 20) -> float | None:
    """Mean run time of the last `n` jobs that ran to an end (None before the first): how long a
    place in the queue takes to free up."""
    seconds = ("extract(epoch FROM finished_at::timestamptz - started_at::timestamptz)" if dialect(conn) == "postgres"
               else "(julianday(finished_at) - julianday(started_at)) * 86400.0")
    row = conn.execute(
        f"SELECT avg({seconds}) FROM (SELECT started_at, finished_at"
        " FROM ingestion_jobs WHERE status IN ('done', 'failed') AND started_at IS NOT NULL"
        " AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?) AS recent", (n,)).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def cancel_job(conn: Connection, job_id: str, *, code: str, message: str) -> JobRecord:
    """Ends a queued or running job as `cancelled`. A job that finished first raises `Conflict`
    (`job_finished`); a worker that finishes after this cannot store its document, because
    `add_document` refuses a finished job in the same transaction that would store it."""
    return update_job(conn, job_id, status="cancelled", error_code=code, error_message=message)


def fail_unfinished_jobs(
    conn: Connection,
    *,
    code: str = "interrupted",
    message: str = "The service stopped before the job finished; upload the file again.",
) -> int:
    """Start-up: jobs left `queued`/`running` by a crash or stop become `failed` with `code`.
    Their document was never committed (adding is one transaction), so nothing else needs undoing.
    Returns how many jobs changed."""
    now = utcnow()
    with transaction(conn):
        return conn.execute(
            "UPDATE ingestion_jobs SET status = 'failed', error_code = ?, error_message = ?,"
            " updated_at = ?, finished_at = ? WHERE status IN ('queued', 'running')",
            (code, message, now, now),
        ).rowcount


def finish_job(conn: Connection, job: JobRecord, document_id: int, *, duplicate: bool) -> None:
    now = utcnow()
    progress = {**job.progress, "stage": "done", "fraction": 1.0}
    if duplicate:
        progress["duplicate"] = True
    conn.execute(
        "UPDATE ingestion_jobs SET status = 'done', document_id = ?, progress = ?, updated_at = ?,"
        " finished_at = ?, started_at = coalesce(started_at, ?) WHERE id = ?",
        (document_id, json.dumps(progress), now, now, now, job.id),
    )
    _drop_payload(conn, job.id)


def _drop_payload(conn, job_id: str) -> None:
    """Postgres keeps an upload's bytes with its job until the job ends (`rag.store.pg_jobs`)."""
    if dialect(conn) == "postgres":
        conn.execute("DELETE FROM job_payloads WHERE job_id = ?", (job_id,))

