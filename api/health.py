from fastapi import APIRouter, Request

router = APIRouter()


@router.get("/health")
def health(request: Request) -> dict:
    """Versions and which models are loaded; answers even while ingestion is busy."""
    return request.app.state.runtime.health()
