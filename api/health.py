from fastapi import APIRouter, Request

from api.security import bearer

router = APIRouter()


@router.get("/health")
def health(request: Request) -> dict:
    """Open to anyone, answers even while ingestion is busy; versions, models and the queue only with a key."""
    runtime = request.app.state.runtime
    detail = runtime.settings.auth == "off" or bearer(request) is not None
    return runtime.health(detail=detail)
