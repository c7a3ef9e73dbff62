"""Ingestion jobs: one per uploaded file, polled until `done`, `failed` or `cancelled`."""

from fastapi import APIRouter, Depends, Request

from api.openapi import errors
from api.schemas import JobId, JobOut
from api.security import principal
from rag.errors import NotFound
from rag.service.auth import Principal

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def _missing(job_id: str) -> NotFound:
    return NotFound(f"job {job_id!r} does not exist", code="job_not_found")


@router.get("/{job_id}", response_model=JobOut, responses=errors({404: ["job_not_found"]}))
def get_job(job_id: JobId, request: Request, who: Principal = Depends(principal)) -> JobOut:
    job = request.app.state.runtime.ingest.get_job(job_id)
    who.require(job.collection, missing=_missing(job_id))
    return JobOut.of(job)


@router.delete("/{job_id}", response_model=JobOut,
               responses=errors({403: ["forbidden"], 404: ["job_not_found"], 409: ["job_finished"]}))
def cancel_job(job_id: JobId, request: Request, who: Principal = Depends(principal)) -> JobOut:
    """Cancels a queued or running job: it ends as `cancelled` (error `job_cancelled`) and nothing
    of its document is stored. A job that already ended answers 409 `job_finished`."""
    ingest = request.app.state.runtime.ingest
    who.require(ingest.get_job(job_id).collection, "write", missing=_missing(job_id))
    return JobOut.of(ingest.cancel(job_id))
