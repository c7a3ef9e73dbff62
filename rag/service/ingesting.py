"""Ingestion as a service: accept uploads, queue them durably, and run them one at a time.

An accepted upload is durable before it is acknowledged: its bytes are on disk under the job id
and its job row is committed. A worker thread runs jobs in order; at start-up, jobs a crash left
queued or running are queued again from their stored bytes, so nothing acknowledged is lost.
Writes are serialised by the single worker (and by the index's per-collection write lock).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid

from ingest import errors
from ingest.detect import clean_filename, detect_format
from ingest.uploads import Upload
from rag import store
from rag.errors import RagError
from rag.index.manager import IndexManager
from rag.models.embedder import Embedder
from rag.service.pipeline import Outcome, Pipeline, ProgressFn
from rag.settings import Settings
from rag.store import ThreadConnections
from rag.store.files import write_atomic

log = logging.getLogger(__name__)

_STOP = object()


class IngestService:
    def __init__(self, settings: Settings, db: ThreadConnections, index: IndexManager, embedder: Embedder):
        self.settings = settings
        self.db = db
        self.index = index
        self.pipeline = Pipeline(settings, embedder, index)
        self.uploads_dir = settings.data_dir / "uploads"
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._recover()
        self._worker = threading.Thread(target=self._work, name="ingest-worker", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 30) -> None:
        if self._worker is not None:
            self._queue.put(_STOP)
            self._worker.join(timeout)
            self._worker = None

    def pending(self) -> int:
        """Jobs queued or running in this process."""
        return self._queue.unfinished_tasks

    def wait_idle(self, timeout: float = 600) -> None:
        """Blocks until every queued job has finished (for the CLI and tests)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    def _recover(self) -> None:
        conn = self.db.get()
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        unfinished = [j for status in ("queued", "running") for j in store.list_jobs(conn, status=status, limit=1_000_000)]
        unfinished.sort(key=lambda j: j.created_at)
        keep = set()
        for job in unfinished:
            if (self.uploads_dir / job.id).is_file():
                store.update_job(conn, job.id, status="queued", progress={"stage": "queued", "requeued": True})
                self._queue.put(job.id)
                keep.add(job.id)
            else:  # its bytes are gone: it cannot be re-run
                err = errors.interrupted()
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
        conn = self.db.get()
        store.get_collection(conn, collection)
        checked = [self.validate(u) for u in uploads]
        jobs = []
        for upload in checked:
            job_id = uuid.uuid4().hex
            write_atomic(self.uploads_dir / job_id, upload.data)  # durable before the job row, before the 202
            jobs.append(store.create_job(conn, collection, upload.filename, job_id=job_id,
                                        progress={"stage": "queued", "bytes": len(upload.data)}))
        for job in jobs:
            self._queue.put(job.id)
        return jobs

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
        conn = self.db.get()
        job = store.get_job(conn, job_id)
        if job.status != "queued":
            return None
        path = self.uploads_dir / job_id
        store.update_job(conn, job_id, status="running", progress={"stage": "starting"})

        def report(p: dict) -> None:
            store.update_job(conn, job_id, progress=p)
            if progress:
                progress(p)

        try:
            outcome = self.pipeline.run(conn, job.collection, job.filename, path.read_bytes(), job_id, report)
        except RagError as exc:
            self._fail(conn, job_id, exc.code, exc.message)
            return None
        except Exception as exc:  # noqa: BLE001 - reported on the job, logged in full
            log.exception("ingestion of %s failed", job.filename)
            err = errors.internal(type(exc).__name__)
            self._fail(conn, job_id, err.code, err.message)
            return None
        finally:
            path.unlink(missing_ok=True)
        return outcome

    def _fail(self, conn, job_id: str, code: str, message: str) -> None:
        try:
            store.update_job(conn, job_id, status="failed", error_code=code, error_message=message)
        except RagError:  # job already finished (e.g. its collection was deleted meanwhile)
            pass

    # ---------------------------------------------------------------- reading

    def get_job(self, job_id: str) -> store.JobRecord:
        return store.get_job(self.db.get(), job_id)


__all__ = ["IngestService"]
