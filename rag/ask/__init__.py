"""Asking: the bounded, fully traced question-answering loop over a document collection.

Public API::

    from rag.ask import ask, Budget, AskOptions, Thresholds, AskResult, Candidate

    result = ask(question, retriever, llm, Budget.from_settings(s).merged(req_overrides),
                 AskOptions.from_settings(s), on_event=..., on_token=...)
    result.to_dict()  # JSON: answer, abstained, citations, usage, stopped_by, calls, support, trace

The core knows nothing of HTTP or storage. See `rag.ask.loop` for the steps and `rag.ask.evidence` for
the decision rules.
"""

from rag.ask.config import AskOptions, Budget, Thresholds
from rag.ask.loop import ask
from rag.ask.ports import LLM, CompletionLike, Retriever
from rag.ask.types import (
    AskError,
    AskResult,
    Candidate,
    Citation,
    InvalidBudget,
    ModelCall,
    Passage,
    QuestionTooLong,
    usage_of,
)

__all__ = [
    "ask",
    "AskOptions",
    "Budget",
    "Thresholds",
    "LLM",
    "CompletionLike",
    "Retriever",
    "AskError",
    "AskResult",
    "Candidate",
    "Citation",
    "InvalidBudget",
    "ModelCall",
    "Passage",
    "QuestionTooLong",
    "usage_of",
]
