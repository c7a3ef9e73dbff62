from fastapi import APIRouter, Request

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}")
def get_job(job_id: str, request: Request) -> dict:
    return request.app.state.runtime.ingest.get_job(job_id)
