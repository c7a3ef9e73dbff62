"""Collections: create, list, delete."""

from fastapi import APIRouter, Request, Response

from api.schemas import CollectionIn, CollectionOut, CollectionsOut

router = APIRouter(prefix="/v1/collections", tags=["collections"])


@router.post("", status_code=201, response_model=CollectionOut)
def create_collection(body: CollectionIn, request: Request) -> CollectionOut:
    return CollectionOut.model_validate(request.app.state.runtime.collections.create(body.name, body.description))


@router.get("", response_model=CollectionsOut)
def list_collections(request: Request) -> CollectionsOut:
    return CollectionsOut(collections=[CollectionOut.model_validate(c) for c in request.app.state.runtime.collections.list()])


@router.delete("/{name}", status_code=204)
def delete_collection(name: str, request: Request) -> Response:
    request.app.state.runtime.collections.delete(name)
    return Response(status_code=204)
