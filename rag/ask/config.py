"""Per-question budgets and loop options.

`Budget` is what a user may cap (model calls, prompt tokens, retrieval rounds, wall time); `AskOptions`
is how the loop runs (retrieval depth, window, which steps are on, decision thresholds). Both come from
`rag.settings.Settings` and accept per-request overrides; both are recorded in the trace.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from rag.ask.types import InvalidBudget
from rag.ask.types import StoppedBy as BudgetName


@dataclass(frozen=True)
class Budget:
    max_model_calls: int = 3
    max_prompt_tokens: int = 8000
    max_rounds: int = 2
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_model_calls", "max_prompt_tokens", "max_rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidBudget(f"{name} must be a non-negative integer, got {v!r}")
        if self.max_rounds < 1:
            raise InvalidBudget("max_rounds must be at least 1 (the search with the question itself)")
        t = self.timeout_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise InvalidBudget(f"timeout_s must be a positive number, got {t!r}")

    @classmethod
    def from_settings(cls, settings: Any = None) -> "Budget":
        if settings is None:
            from rag.settings import get_settings

            settings = get_settings()
        return cls(
            max_model_calls=settings.max_model_calls,
            max_prompt_tokens=settings.max_prompt_tokens,
            max_rounds=settings.max_rounds,
            timeout_s=float(settings.timeout_s),
        )

    def merged(self, overrides: Mapping[str, Any] | None = None, *, ceiling: "Budget | None" = None) -> "Budget":
        """This budget with a request's overrides (None values ignored; unknown keys rejected). With
        `ceiling`, each value is capped at the ceiling's (for servers that only let requests lower them)."""
        changes = _changes(self, overrides, InvalidBudget)
        if "timeout_s" in changes and isinstance(changes["timeout_s"], int) and not isinstance(changes["timeout_s"], bool):
            changes["timeout_s"] = float(changes["timeout_s"])
        out = replace(self, **changes)
        if ceiling is not None:
            out = replace(out, **{f.name: min(getattr(out, f.name), getattr(ceiling, f.name)) for f in fields(self)})
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    def limit(self, name: BudgetName) -> int | float:
        """The value of the budget called `name` (a trace names the budget that stopped something)."""
        limits: dict[BudgetName, int | float] = {
            "max_model_calls": self.max_model_calls,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_rounds": self.max_rounds,
            "timeout_s": self.timeout_s,
        }
        return limits[name]


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds. See the module `rag.ask.evidence` for how they combine."""

    # Top dense (cosine) score that counts as a confident semantic match. Calibrated for
    # multilingual-e5-small with its query:/passage: prefixes, whose scores are compressed: relevant
    # pairs measured 0.84-0.93, unrelated ones up to 0.81. Other embedders need their own value.
    dense_min: float = 0.83
    # Share of the question's key terms found in the top passages: below `coverage_low` evidence is
    # weak; at or above `coverage_high` lexical evidence is strong.
    coverage_low: float = 0.5
    coverage_high: float = 0.75
    coverage_top_n: int = 5  # passages (fused order) whose text counts for coverage
    agree_top_n: int = 3  # retrievers agree when one chunk is in both the dense and BM25 top-n
    # Selection: a candidate below the top `min_passages` enters the context only if BM25 matched it
    # (score > 0) or its dense score is within `dense_margin` of the best one. Dense search always
    # returns k chunks; its tail is usually unrelated and only distracts a small model.
    dense_margin: float = 0.05
    min_passages: int = 2
    # Answer attribution: a sentence is supported by a passage when at least `support_min` of its
    # features (Chinese character bigrams, English word stems, numbers) occur in the passage, and at
    # least `support_min_overlap` of them.
    support_min: float = 0.5
    support_min_overlap: int = 2
    rrf_k: int = 60  # fusion across queries (original question and rewrites)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AskOptions:
    k: int = 8  # candidates per search
    context_window: int = 2048  # answering prompt + answer, in the generator's tokens
    max_answer_tokens: int = 256
    # Passage tokens in the answering prompt. Less than the window allows: every prompt token is paid for
    # in prefill, and on the factoid set the 1.5B answered as well from 768 as from 1,024 (not from 512).
    max_context_tokens: int = 768
    rewrite: bool = True  # allow query rewriting when evidence is weak
    force_rewrite: bool = False  # always run one rewrite round (benchmarks); implies rewrite
    expand: bool = True  # neighbour expansion of cut-off chunks
    judge: bool = False  # ask the model when cheap signals are inconclusive (off: the small model judges badly)
    max_passages: int = 5  # fused candidates taken into the context (before expansion)
    max_rewrite_queries: int = 3  # phrases in the question's language per rewrite
    max_cross_queries: int = 2  # phrases in the collection's other language (mixed collections)
    max_neighbours: int = 2  # chunks added on each side of one passage
    min_context_tokens: int = 256  # passage room reserved for the answer when deciding to rewrite
    answer_time_fraction: float = 0.5  # share of timeout_s reserved for the answer call
    rewrite_max_tokens: int = 64
    judge_max_tokens: int = 8
    inline_citations: bool = True  # put [n] markers after supported answer sentences
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        for name in ("k", "context_window", "max_answer_tokens", "max_context_tokens", "max_passages", "rewrite_max_tokens", "judge_max_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidBudget(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= self.answer_time_fraction < 1.0:
            raise InvalidBudget("answer_time_fraction must be in [0, 1)")
        if isinstance(self.thresholds, Mapping):
            object.__setattr__(self, "thresholds", Thresholds(**dict(self.thresholds)))

    @classmethod
    def from_settings(cls, settings: Any = None, **overrides: Any) -> "AskOptions":
        if settings is None:
            from rag.settings import get_settings

            settings = get_settings()
        base = cls(context_window=settings.context_window, max_answer_tokens=settings.max_answer_tokens,
                   max_context_tokens=settings.max_context_tokens)
        return base.merged(overrides)

    def merged(self, overrides: Mapping[str, Any] | None = None) -> "AskOptions":
        changes = _changes(self, overrides, InvalidBudget)
        th = changes.get("thresholds")
        if isinstance(th, Mapping):
            changes["thresholds"] = replace(self.thresholds, **_changes(self.thresholds, th, InvalidBudget))
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["thresholds"] = self.thresholds.to_dict()
        return d


def _changes(obj: Any, overrides: Mapping[str, Any] | None, error: type[Exception]) -> dict:
    if not overrides:
        return {}
    names = {f.name for f in fields(obj)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise error(f"unknown {type(obj).__name__} field(s): {', '.join(unknown)}")
    return {k: v for k, v in overrides.items() if v is not None}
