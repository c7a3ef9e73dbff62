from fastapi import APIRouter, Request, Response

from api.schemas import CollectionIn

router = APIRouter(prefix="/v1/collections", tags=["collections"])


@router.post("", status_code=201)
def create_collection(body: CollectionIn, request: Request) -> dict:
    return request.app.state.runtime.collections.create(body.name, body.description)


@router.get("")
def list_collections(request: Request) -> dict:
    return {"collections": request.app.state.runtime.collections.list()}


@router.delete("/{name}", status_code=204)
def delete_collection(name: str, request: Request) -> Response:
    request.app.state.runtime.collections.delete(name)
    return Response(status_code=204)
