"""Ingestion as a service: accept uploads, queue them durably, and run them one at a time.

An accepted upload is durable before it is acknowledged: its bytes are on disk under the job id
and its job row is committed. A worker thread runs jobs in order; at start-up, jobs a crash left
queued or running are queued again from their stored bytes, so nothing acknowledged is lost,
except a job that was running when the process died `MAX_ATTEMPTS` times (it is what kills it).
`RAG_INGEST_WORKERS` threads run jobs at once, taking turns at the embedder batch by batch, so a
large document slows a small upload behind it rather than stopping it; a document's writes are one
transaction under the index's per-collection write lock.

With PostgreSQL (`RAG_DATABASE_URL`) the queue is the database's: an upload's bytes are stored
with its job row in one transaction, and any number of workers (`rag worker`, or this server's
own with `RAG_SERVE_WORKER`) on any machine claim jobs with a lease (`rag.store.pg_jobs`); a
worker's lease is renewed by a heartbeat while it runs a job, and a killed worker's job is
claimed again when its lease runs out. Nothing is recovered at start-up: the leases do it.

The queue is bounded (`max_queued_jobs`: an upload beyond it is refused with 429 before any byte
is written) and any queued or running job can be cancelled. A request of several files queues the
good ones and reports each file it refused (`Submitted.rejected`), as a user dropping a folder
expects (`submit_each`); `submit` refuses the whole request for one bad file instead.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from ingest import errors
from ingest.detect import clean_filename, detect_format
from ingest.uploads import Upload
from rag import store
from rag.errors import IngestError, RagError
from rag.index.search_index import SearchIndex
from rag.models.embedder import Embedder
from rag.service.pipeline import Cancel, Outcome, PassageEmbedder, Pipeline, ProgressFn
from rag.service.quotas import RateLimited
from rag.settings import Settings
from rag.store import Connection, Connections
from rag.store.dialect import dialect
from rag.store.files import write_atomic

log = logging.getLogger(__name__)

_STOP = object()
MAX_ATTEMPTS = 3  # runs a job may start before a crash during it means it is not run again


@dataclass(frozen=True)
class Rejected:
    """A file of an upload request that was not queued, and why (its error's code and message)."""

    filename: str
    error: IngestError


@dataclass(frozen=True)
class Submitted:
    jobs: list[store.JobRecord]  # one per accepted file, in request order
    rejected: list[Rejected]  # one per refused file, in request order


class IngestService:
    def __init__(self, settings: Settings, db: Connections, index: SearchIndex, embedder: Embedder,
                 passages: PassageEmbedder | None = None):
        self.settings = settings
        self.db = db
        self.index = index
        self.pipeline = Pipeline(settings, embedder, index, passages)
        self.uploads_dir = settings.data_dir / "uploads"
        self._queue: queue.Queue = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._running: dict[str, Cancel] = {}  # job id -> its cancel request, while it runs here
        self._submit_lock = threading.Lock()  # the queue-length check and the new rows, as one step
        self.shared = dialect(db.get()) == "postgres"  # the queue is the database's, shared by workers
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._claiming: list[threading.Thread] = []
        self.poll_s = 0.25

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        n = self.settings.ingest_workers
        if self.shared:
            self._stop.clear()
            self._claiming = [threading.Thread(target=self._claim_loop, name=f"ingest-worker-{i}", daemon=True)
                              for i in range(n)]
            for t in self._claiming:
                t.start()
            return
        self._recover()
        self._workers = [threading.Thread(target=self._work, name=f"ingest-worker-{i}", daemon=True) for i in range(n)]
        for t in self._workers:
            t.start()

    def stop(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        if self._claiming:
            self._stop.set()
            for cancel in list(self._running.values()):
                cancel.requested.set()
            for t in self._claiming:
                t.join(max(0.0, deadline - time.monotonic()))
            self._claiming = []
        if self._workers:
            for _ in self._workers:
                self._queue.put(_STOP)
            for t in self._workers:
                t.join(max(0.0, deadline - time.monotonic()))
            self._workers = []

    def pending(self) -> int:
        """Jobs queued or running (in this process; with Postgres, on every worker)."""
        if self.shared:
            from rag.store import pg_jobs

            return pg_jobs.unfinished_jobs(self.db.get())
        return self._queue.unfinished_tasks

    def wait_idle(self, timeout: float = 600) -> None:
        """Blocks until every queued job has finished (for the CLI and tests)."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _recover(self) -> None:
        conn = self.db.get()
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        unfinished = [j for status in ("queued", "running") for j in store.list_jobs(conn, status=status, limit=1_000_000)]
        unfinished.sort(key=lambda j: j.created_at)
        keep = set()
        for job in unfinished:
            attempts = int(job.progress.get("attempt", 0))
            if not (self.uploads_dir / job.id).is_file():  # its bytes are gone: it cannot be re-run
                err = errors.interrupted()
            elif job.status == "running" and attempts >= MAX_ATTEMPTS:
                err = errors.interrupted()
                err.message = (f"The service stopped during this job {attempts} times; it is not run again "
                               "(the document may be what stops it). Check the server log.")
            else:
                store.update_job(conn, job.id, status="queued",
                                 progress={"stage": "queued", "requeued": True, "attempt": attempts})
                self._queue.put(job.id)
                keep.add(job.id)
                continue
            store.update_job(conn, job.id, status="failed", error_code=err.code, error_message=err.message)
        for path in self.uploads_dir.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)
        if keep:
            log.info("re-queued %d interrupted ingestion job(s)", len(keep))

    # ---------------------------------------------------------------- submitting

    def validate(self, upload: Upload) -> Upload:
        """Checks that need no parsing; run on every file of a request before any job is created."""
        name = clean_filename(upload.filename)
        if len(upload.data) > self.settings.max_upload_bytes:
            raise errors.file_too_large(len(upload.data), self.settings.max_upload_bytes)
        if not upload.data:
            raise errors.empty_file(f"{name!r} has 0 bytes")
        detect_format(name, upload.data[:4096])
        return Upload(name, upload.data)

    def submit(self, collection: str, uploads: list[Upload]) -> list[store.JobRecord]:
        """All or nothing: one job per file, or the first bad file's error and nothing queued."""
        conn = self.db.get()
        store.get_collection(conn, collection)
        return self._queue_jobs(conn, collection, [self.validate(u) for u in uploads])

    def submit_each(self, collection: str, uploads: list[Upload]) -> Submitted:
        """Queues every file that passes `validate` and reports the others. When every file is
        refused, raises the first one's error (nothing is queued). Errors of the request as a
        whole (collection, queue room) always raise."""
        conn = self.db.get()
        store.get_collection(conn, collection)
        checked, rejected = [], []
        for upload in uploads:
            try:
                checked.append(self.validate(upload))
            except IngestError as exc:
                rejected.append(Rejected(upload.filename[:300], exc))
        if not checked:
            raise rejected[0].error
        return Submitted(self._queue_jobs(conn, collection, checked), rejected)

    def _queue_jobs(self, conn: Connection, collection: str, checked: list[Upload]) -> list[store.JobRecord]:
        with self._submit_lock:
            self._check_room(conn, len(checked))
            if self.shared:
                return self._submit_shared(conn, collection, checked)
            jobs = []
            for upload in checked:
                job_id = uuid.uuid4().hex
                write_atomic(self.uploads_dir / job_id, upload.data)  # durable before the job row, before the 202
                jobs.append(store.create_job(conn, collection, upload.filename, job_id=job_id,
                                            progress={"stage": "queued", "bytes": len(upload.data)}))
        for job in jobs:
            self._queue.put(job.id)
        return jobs

    def _submit_shared(self, conn: Connection, collection: str, uploads: list[Upload]) -> list[store.JobRecord]:
        """Every job row with its bytes, in one transaction: all of the request is queued, or none."""
        from rag.store import pg_jobs

        with store.transaction(conn):
            jobs = []
            for upload in uploads:
                job = store.create_job(conn, collection, upload.filename, job_id=uuid.uuid4().hex,
                                       progress={"stage": "queued", "bytes": len(upload.data)})
                pg_jobs.save_payload(conn, job.id, upload.data)
                jobs.append(job)
        return jobs

    def _check_room(self, conn: Connection, adding: int) -> None:
        """429 `queue_full` when `adding` more jobs would pass `max_queued_jobs`; Retry-After is the
        time recent jobs took to free as many places."""
        limit = self.settings.max_queued_jobs
        queued = store.count_queued_jobs(conn)
        if queued + adding <= limit:
            return
        per_job = store.recent_job_seconds(conn) or 1.0
        wait = max(1, min(3600, math.ceil(per_job * max(1, queued + adding - limit))))
        raise RateLimited(f"the ingestion queue is full ({queued} of {limit} jobs waiting, RAG_MAX_QUEUED_JOBS); "
                          f"retry in {wait} s", retry_after=wait, code="queue_full")

    # ---------------------------------------------------------------- cancelling

    def cancel(self, job_id: str) -> store.JobRecord:
        """Ends a queued or running job as `cancelled` (409 `job_finished` if it already ended).
        A running job stops at its next safe point; nothing of it is stored either way."""
        conn = self.db.get()
        err = errors.job_cancelled()
        job = store.cancel_job(conn, job_id, code=err.code, message=err.message)
        running = self._running.get(job_id)
        if running is not None:
            running.requested.set()
        elif not self.shared:  # Postgres drops the bytes with the job's end; a worker elsewhere sees the status
            (self.uploads_dir / job_id).unlink(missing_ok=True)
        return job

    # ---------------------------------------------------------------- running

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            try:
                if job_id is _STOP:
                    return
                self.run_job(job_id)
            except Exception:  # the worker must survive anything one document does
                log.exception("ingestion worker error on job %s", job_id)
            finally:
                self._queue.task_done()

    def run_job(self, job_id: str, progress: ProgressFn | None = None) -> Outcome | None:
        """Runs one queued job here (the CLI); with Postgres a job another worker took is waited for."""
        conn = self.db.get()
        if self.shared:
            return self._run_shared(conn, job_id, progress)
        job = store.get_job(conn, job_id)
        if job.status != "queued":
            return None
        path = self.uploads_dir / job_id
        attempt = int(job.progress.get("attempt", 0)) + 1
        cancel = self._running[job_id] = Cancel()
        try:
            store.update_job(conn, job_id, status="running", progress={"stage": "starting", "attempt": attempt})
        except RagError:  # cancelled between the check above and now
            self._running.pop(job_id, None)
            return None
        try:
            return self._execute(conn, job, lambda: path.read_bytes(), attempt, cancel, progress)
        finally:
            path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- running (Postgres: claimed jobs)

    def _claim_loop(self) -> None:
        from rag.store import pg_jobs

        conn = self.db.get()
        err = errors.interrupted()
        message = (f"Workers stopped during this job {MAX_ATTEMPTS} times; it is not run again "
                   "(the document may be what stops them). Check the workers' logs.")
        while not self._stop.is_set():
            try:
                pg_jobs.fail_abandoned(conn, max_attempts=MAX_ATTEMPTS, code=err.code, message=message)
                job = pg_jobs.claim_job(conn, self.worker_id, self.settings.job_lease_s)
            except Exception:  # the database restarting: try again shortly
                log.exception("claiming a job failed")
                job = None
            if job is None:
                self._stop.wait(self.poll_s)
                continue
            try:
                self.run_claimed(job)
            except Exception:  # the worker must survive anything one document does
                log.exception("ingestion worker error on job %s", job.id)

    def _run_shared(self, conn: Connection, job_id: str, progress: ProgressFn | None) -> Outcome | None:
        from rag.store import pg_jobs

        job = pg_jobs.claim_job(conn, self.worker_id, self.settings.job_lease_s, job_id=job_id)
        if job is not None:
            return self.run_claimed(job, progress)
        while store.get_job(conn, job_id).status not in store.FINISHED_JOB_STATUSES:
            time.sleep(self.poll_s)
        return None

    def run_claimed(self, job: store.JobRecord, progress: ProgressFn | None = None) -> Outcome | None:
        """Runs a job this worker claimed, renewing its lease until it ends."""
        from rag.store import pg_jobs

        conn = self.db.get()
        cancel = self._running[job.id] = Cancel()
        ended = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job.id, cancel, ended), name="ingest-lease", daemon=True)
        beat.start()
        try:
            return self._execute(conn, job, lambda: pg_jobs.load_payload(conn, job.id) or b"",
                                 pg_jobs.attempts(conn, job.id), cancel, progress)
        finally:
            ended.set()
            beat.join()

    def _heartbeat(self, job_id: str, cancel: Cancel, ended: threading.Event) -> None:
        """Renews the lease every third of it; a job that stopped being ours (cancelled anywhere, or
        claimed by another worker after a lapse) is cancelled here, at its next safe point."""
        from rag.store import pg_jobs

        conn = self.db.get()
        while not ended.wait(max(0.05, self.settings.job_lease_s / 3)):
            try:
                if not pg_jobs.renew_lease(conn, job_id, self.worker_id, self.settings.job_lease_s):
                    cancel.requested.set()
                    return
            except Exception:
                log.exception("renewing the lease of job %s failed", job_id)

    def _execute(self, conn: Connection, job: store.JobRecord, data, attempt: int, cancel: Cancel,
                 progress: ProgressFn | None) -> Outcome | None:
        job_id = job.id

        def report(p: dict) -> None:
            cancel.check()
            store.update_job(conn, job_id, progress={**p, "attempt": attempt})
            if progress:
                progress(p)

        try:
            outcome = self.pipeline.run(conn, job.collection, job.filename, data(), job_id, report, cancel)
        except RagError as exc:
            self._fail(conn, job_id, exc.code, exc.message)
            return None
        except Exception as exc:  # noqa: BLE001 - reported on the job, logged in full
            log.exception("ingestion of %s failed", job.filename)
            err = errors.internal(type(exc).__name__)
            self._fail(conn, job_id, err.code, err.message)
            return None
        finally:
            self._running.pop(job_id, None)
        return outcome

    def _fail(self, conn: Connection, job_id: str, code: str, message: str) -> None:
        if self.shared:
            from rag.store import pg_jobs

            if not pg_jobs.owned(conn, job_id, self.worker_id):  # another worker runs it now: its outcome counts
                return
        try:
            store.update_job(conn, job_id, status="failed", error_code=code, error_message=message)
        except RagError:  # job already finished (e.g. its collection was deleted meanwhile)
            pass

    # ---------------------------------------------------------------- reading

    def get_job(self, job_id: str) -> store.JobRecord:
        return store.get_job(self.db.get(), job_id)

    def list_jobs(self, collection: str, *, status: str | None = None, limit: int = 100) -> list[store.JobRecord]:
        """A collection's jobs, newest first (404 for an unknown collection): failed uploads stay findable."""
        conn = self.db.get()
        store.get_collection(conn, collection)
        return store.list_jobs(conn, collection, status=status, limit=limit)


__all__ = ["IngestService"]
