from fastapi import APIRouter, Request

from api.security import bearer

router = APIRouter()


@router.get("/health")
def health(request: Request) -> dict:
    """Open to anyone, answers even while ingestion is busy. Versions, folders, the store, the whole queue
    and the machine for an admin key (or with auth off); a key limited to some collections sees the
    models' names and the jobs of its own collections; no key, only the status."""
    runtime = request.app.state.runtime
    if runtime.settings.auth == "off":
        return runtime.health(detail=True)
    who = bearer(request)
    if who is None:
        return runtime.health(detail=False)
    if who.is_admin:
        return runtime.health(detail=True)
    scope = who.scope()
    if scope is None:  # a read/write key on every collection
        scope = [c.name for c in runtime.collections.list()] if runtime.collections else []
    return runtime.health(scope=scope)
