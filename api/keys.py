"""API keys, for admin keys only: create (the key is shown once), list, revoke."""

from fastapi import APIRouter, Depends, Request

from api.openapi import errors
from api.schemas import KeyId, KeyIn, KeyOut, KeysOut, NewKeyOut
from api.security import principal
from rag.service.auth import Principal

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=errors({403: ["forbidden"]}))


@router.post("", status_code=201, response_model=NewKeyOut, responses=errors({404: ["collection_not_found"]}))
def create_key(body: KeyIn, request: Request, who: Principal = Depends(principal)) -> NewKeyOut:
    who.require_admin()
    new = request.app.state.runtime.keys.create(body.role, collections=body.collections, grants=body.grants,
                                                 name=body.name)
    return NewKeyOut(**KeyOut.model_validate(new.record).model_dump(), key=new.key)


@router.get("", response_model=KeysOut)
def list_keys(request: Request, who: Principal = Depends(principal)) -> KeysOut:
    who.require_admin()
    return KeysOut(keys=[KeyOut.model_validate(k) for k in request.app.state.runtime.keys.list()])


@router.delete("/{key_id}", response_model=KeyOut, responses=errors({404: ["key_not_found"]}))
def revoke_key(key_id: KeyId, request: Request, who: Principal = Depends(principal)) -> KeyOut:
    who.require_admin()
    return KeyOut.model_validate(request.app.state.runtime.keys.revoke(key_id))
