"""Collections: create and delete (admin keys), list (what the key may read)."""

from fastapi import APIRouter, Depends, Request, Response

from api.openapi import errors
from api.schemas import CollectionIn, CollectionOut, CollectionPath, CollectionsOut
from api.security import principal
from rag.service.auth import Principal

router = APIRouter(prefix="/v1/collections", tags=["collections"])


@router.post("", status_code=201, response_model=CollectionOut,
             responses=errors({403: ["forbidden"], 409: ["collection_exists"]}))
def create_collection(body: CollectionIn, request: Request, who: Principal = Depends(principal)) -> CollectionOut:
    who.require_admin()
    return CollectionOut.model_validate(request.app.state.runtime.collections.create(body.name, body.description))


@router.get("", response_model=CollectionsOut)
def list_collections(request: Request, who: Principal = Depends(principal)) -> CollectionsOut:
    found = [c for c in request.app.state.runtime.collections.list() if who.can_read(c.name)]
    return CollectionsOut(collections=[CollectionOut.model_validate(c) for c in found])


@router.delete("/{name}", status_code=204, responses=errors({
    403: ["forbidden"], 404: ["collection_not_found"], 409: ["collection_protected"]}))
def delete_collection(name: CollectionPath, request: Request, who: Principal = Depends(principal)) -> Response:
    who.require(name, "admin")
    request.app.state.runtime.collections.delete(name)
    return Response(status_code=204)
