"""Ingestion jobs: one per uploaded file, polled until `done` or `failed`."""

from fastapi import APIRouter, Request

from api.schemas import JobOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, request: Request) -> JobOut:
    return JobOut.of(request.app.state.runtime.ingest.get_job(job_id))
