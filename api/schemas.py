"""Wire formats of the API. Response shapes are the contract; keep field names stable."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CollectionIn(BaseModel):
    name: str = Field(..., description="1-64 characters: letters, digits, '_', '-', '.'; starts with a letter or digit.")
    description: str = ""


class SearchIn(BaseModel):
    query: str = Field(..., min_length=1, max_length=4000)
    k: int = Field(10, ge=1, le=100)


class JobRef(BaseModel):
    id: str
    filename: str


class JobsOut(BaseModel):
    jobs: list[JobRef]
