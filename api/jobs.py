"""Ingestion jobs: one per uploaded file, polled until `done` or `failed`."""

from fastapi import APIRouter, Depends, Request

from api.schemas import JobOut
from api.security import principal
from rag.errors import NotFound
from rag.service.auth import Principal

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, request: Request, who: Principal = Depends(principal)) -> JobOut:
    job = request.app.state.runtime.ingest.get_job(job_id)
    who.require(job.collection, missing=NotFound(f"job {job_id!r} does not exist", code="job_not_found"))
    return JobOut.of(job)
