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


class BudgetIn(BaseModel):
    max_model_calls: int | None = Field(None, ge=0, le=50)
    max_prompt_tokens: int | None = Field(None, ge=0, le=1_000_000)
    max_rounds: int | None = Field(None, ge=1, le=10)
    timeout_s: float | None = Field(None, gt=0, le=3600)


class QuestionIn(BaseModel):
    question: str = Field(..., min_length=1, max_length=4000)
    budget: BudgetIn | None = None
    stream: bool = False
    options: dict | None = Field(None, description="Loop options (advanced; e.g. {\"force_rewrite\": true}).")
