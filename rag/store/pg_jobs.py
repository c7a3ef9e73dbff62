"""The shared ingestion queue in PostgreSQL: uploads stored with their job, claimed by any worker.

A worker claims the oldest queued job (or one whose worker's lease ran out) with
`FOR UPDATE SKIP LOCKED`, so N workers never take the same job and never wait on each other. The
claim is a lease: the worker renews it while it runs the job (`renew_lease`); a worker killed
mid-job stops renewing, and after `RAG_JOB_LEASE_S` its job is claimed again by another. A job
claimed `max_attempts` times whose lease ran out again is failed `interrupted` instead (the
document may be what kills workers). Exactly once: storing the document and finishing the job are
one transaction that refuses a job that already finished, and a collection holds one document per
sha256, so a job run twice by a worker that lost its lease still stores one document.
"""

from __future__ import annotations

from rag.store.connection import Connection
from rag.store.db import transaction, utcnow
from rag.store.jobs import _job
from rag.store.records import JobRecord


def save_payload(conn: Connection, job_id: str, data: bytes) -> None:
    """The upload's bytes, in the caller's transaction with the job row."""
    conn.execute("INSERT INTO job_payloads (job_id, data) VALUES (?, ?)", (job_id, data))


def load_payload(conn: Connection, job_id: str) -> bytes | None:
    row = conn.execute("SELECT data FROM job_payloads WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else bytes(row[0])


def delete_payload(conn: Connection, job_id: str) -> None:
    conn.execute("DELETE FROM job_payloads WHERE job_id = ?", (job_id,))


def fail_abandoned(conn: Connection, *, max_attempts: int, code: str, message: str) -> int:
    """Jobs whose lease ran out after `max_attempts` claims are failed, their bytes dropped."""
    now = utcnow()
    with transaction(conn):
        rows = conn.execute(
            "UPDATE ingestion_jobs SET status = 'failed', error_code = ?, error_message = ?, updated_at = ?,"
            " finished_at = ?, claimed_by = NULL, lease_until = NULL"
            " WHERE status = 'running' AND lease_until < now() AND attempts >= ? RETURNING id",
            (code, message, now, now, int(max_attempts))).fetchall()
        for (job_id,) in rows:
            delete_payload(conn, job_id)
    return len(rows)


def claim_job(conn: Connection, worker: str, lease_s: float, *, job_id: str | None = None) -> JobRecord | None:
    """The oldest runnable job (or `job_id`, if it is runnable), now `running` and leased to
    `worker`; None when there is none."""
    now = utcnow()
    only = "id = ? AND " if job_id is not None else ""
    with transaction(conn):
        row = conn.execute(
            "UPDATE ingestion_jobs SET status = 'running', claimed_by = ?,"
            " lease_until = now() + make_interval(secs => ?), attempts = attempts + 1,"
            " started_at = coalesce(started_at, ?), updated_at = ?"
            " WHERE id = (SELECT id FROM ingestion_jobs"
            f"             WHERE {only}(status = 'queued' OR (status = 'running' AND lease_until < now()))"
            "             ORDER BY rowid FOR UPDATE SKIP LOCKED LIMIT 1)"
            " RETURNING *", (worker, float(lease_s), now, now, *([job_id] if job_id is not None else []))).fetchone()
    return None if row is None else _job(row)


def attempts(conn: Connection, job_id: str) -> int:
    row = conn.execute("SELECT attempts FROM ingestion_jobs WHERE id = ?", (job_id,)).fetchone()
    return 0 if row is None else int(row[0])


def renew_lease(conn: Connection, job_id: str, worker: str, lease_s: float) -> bool:
    """Extends `worker`'s lease; False when the job is no longer its own (cancelled, finished, or
    claimed by another worker after a lapse)."""
    with transaction(conn):
        return conn.execute(
            "UPDATE ingestion_jobs SET lease_until = now() + make_interval(secs => ?)"
            " WHERE id = ? AND claimed_by = ? AND status = 'running'", (float(lease_s), job_id, worker)).rowcount == 1


def unfinished_jobs(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM ingestion_jobs WHERE status IN ('queued', 'running')").fetchone()[0])


def owned(conn: Connection, job_id: str, worker: str) -> bool:
    row = conn.execute("SELECT claimed_by FROM ingestion_jobs WHERE id = ?", (job_id,)).fetchone()
    return row is not None and row[0] == worker
