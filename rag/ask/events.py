"""The trace's events: one frozen dataclass per kind, the only place their JSON is defined.

The loop builds these; `rag.ask.trace.Trace.emit` numbers and times them and stores
``{"seq", "t_ms", **event.to_dict()}``. A stored trace is plain JSON read by the ledger, `rag replay`,
`rag trace`, the benchmarks and the console, so `to_dict` keeps the key order fields are declared in,
and a field made with `optional()` is left out while it is None (`lexical_skipped` appears only when
BM25 sat out). Readers of stored events match them with `matches(event, Class, field=value)`, which
refuses a value the class cannot have; the API's schema of a trace is built from `wire_fields`.

Decisions are one kind (`"decision"`) with a class per `step`; `VERDICTS` lists each step's verdicts.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from rag.ask.types import ModelCall, Purpose
from rag.ask.types import StoppedBy as BudgetName

EvidenceVerdict = Literal["sufficient", "weak", "inconclusive", "absent", "empty"]
JudgeVerdict = Literal["judge", "skip", "sufficient", "incomplete", "weak", "unparsed"]
RewriteVerdict = Literal["rewrite", "skip", "stop"]
SupportVerdict = Literal["unverified", "unsupported", "drop", "cut"]
# Why an answer is not whole: the answer call ended by the question's deadline or by its token limit.
IncompleteReason = Literal["timeout_s", "max_answer_tokens"]
AbstainVerdict = Literal["abstain"]
CondenseVerdict = Literal["skip", "substitute", "condense", "fallback", "blocked"]
QueryOrigin = Literal["question", "rewrite"]
RewriteMode = Literal["translate", "keywords"]
Side = Literal["next", "prev"]

_OMIT_NONE = "omit_none"  # field metadata: left out of the JSON while None
_FLATTEN = "flatten"  # field metadata: its own to_dict() spliced in place of the field


def optional() -> Any:
    """A field that is absent from the event's JSON unless set."""
    return field(default=None, metadata={_OMIT_NONE: True})


def plain(v: Any) -> Any:
    """JSON-safe copy: sets -> sorted lists, tuples -> lists, objects with to_dict -> dicts, NaN -> None."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return [plain(x) for x in sorted(v, key=repr)]
    if hasattr(v, "to_dict"):
        return plain(v.to_dict())
    if isinstance(v, float) and v != v:  # NaN is not JSON
        return None
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


# ------------------------------------------------------------------ parts of events


class _Part:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Hit(_Part):
    """One retriever's hit: rank within its list (1-based) and its own score."""

    chunk_id: int
    rank: int
    score: float | None


@dataclass(frozen=True)
class FusedHit(_Part):
    """A hit of the fused list, with where its chunk lies."""

    chunk_id: int
    rank: int
    score: float
    document_id: int
    filename: str
    page: int | None
    ordinal: int


@dataclass(frozen=True)
class SkippedPhrase(_Part):
    """A phrase of the rewrite's output that was not searched, and why."""

    query: str
    reason: str


@dataclass(frozen=True)
class NotSelected(_Part):
    """A fused candidate left out of the context, and why."""

    chunk_id: int
    rank: int
    reason: str


# ------------------------------------------------------------------ events


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str]

    def tags(self) -> dict[str, str]:
        """The constants that say what the event is: its `type` (and a decision's `step`)."""
        return {"type": self.kind}

    def to_dict(self) -> dict[str, Any]:
        """The event's JSON (plain types only), `seq` and `t_ms` aside."""
        out: dict[str, Any] = self.tags()
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get(_FLATTEN):
                out.update(value.to_dict())
            elif value is not None or not f.metadata.get(_OMIT_NONE):
                out[f.name] = value
        return plain(out)


@dataclass(frozen=True, kw_only=True)
class Start(Event):
    """The question, its language and key terms, and the settings the loop runs with."""

    kind = "start"
    question: str
    language: str
    collection_languages: list[str]
    key_terms: dict  # rag.ask.terms.KeyTerms.to_dict()
    settings: dict  # everything a replay needs: versions, budget, options, model, window, languages


@dataclass(frozen=True, kw_only=True)
class Query(Event):
    """One search: the question itself (`origin` question) or a rewrite's phrase."""

    kind = "query"
    round: int
    query: str
    origin: QueryOrigin
    language: str
    k: int


@dataclass(frozen=True, kw_only=True)
class Candidates(Event):
    """What one search returned: each retriever's ranking and the fused one."""

    kind = "candidates"
    round: int
    query: str
    dense: list[Hit]
    bm25: list[Hit]
    lexical_skipped: str | None = optional()  # why BM25 sat out this query
    fused: list[FusedHit]


@dataclass(frozen=True, kw_only=True)
class Fused(Event):
    """Everything found so far, fused into one ranking (duplicate texts removed)."""

    kind = "fused"
    round: int
    queries: int
    candidates: list[dict]  # rag.ask.pool.Pooled.to_dict(), best first
    duplicates: list[dict]  # {chunk_id, same_as, reason}


@dataclass(frozen=True, kw_only=True)
class Decision(Event):
    """A decision of the loop, with its reason in words and numbers. `step` says which."""

    kind = "decision"
    step: ClassVar[str]

    def tags(self) -> dict[str, str]:
        return {"type": self.kind, "step": self.step}


@dataclass(frozen=True, kw_only=True)
class EvidenceDecision(Decision):
    """The evidence judged by cheap signals: answer, rewrite or abstain."""

    step = "evidence"
    round: int
    verdict: EvidenceVerdict
    reason: str
    signals: dict  # rag.ask.evidence.Assessment.signals


@dataclass(frozen=True, kw_only=True)
class JudgeDecision(Decision):
    """The optional judge call (`options.judge`) and what its answer decided."""

    step = "judge"
    verdict: JudgeVerdict
    reason: str


@dataclass(frozen=True, kw_only=True)
class RewriteDecision(Decision):
    """`round`, `mode` and `target_language` are set when the verdict is `rewrite`."""

    step = "rewrite"
    verdict: RewriteVerdict
    round: int | None = optional()
    mode: RewriteMode | None = optional()
    target_language: str | None = optional()
    reason: str


@dataclass(frozen=True, kw_only=True)
class SupportDecision(Decision):
    """`sentences`: those removed, when the verdict is `drop` (a figure in no passage) or `cut` (the
    answer call was cut: its unfinished last sentence, and after a deadline every unsupported one)."""

    step = "support"
    verdict: SupportVerdict
    reason: str
    sentences: list[str] | None = optional()


@dataclass(frozen=True, kw_only=True)
class CondenseDecision(Decision):
    """A conversation's follow-up: searched as asked (`skip`: it names its own subject), made standalone
    without a model (`substitute`: a Chinese ellipsis "X 呢？", X put in place of the previous question's
    name), condensed into `standalone` by a model call (`condense`), or, when that call's output was
    unusable (`fallback`) or the budget could not pay for it (`blocked`), joined to the previous
    question instead."""

    step = "condense"
    verdict: CondenseVerdict
    reason: str
    markers: list[str]  # the back-pointing words found (rag.text.followup)
    history_turns: int  # earlier turns the conversation had
    standalone: str | None = optional()


@dataclass(frozen=True, kw_only=True)
class AbstainDecision(Decision):
    """The question is refused: the documents do not say, or a budget left no way to answer."""

    step = "abstain"
    verdict: AbstainVerdict = "abstain"
    reason: str


@dataclass(frozen=True, kw_only=True)
class Rewrite(Event):
    """The rewrite call's phrases: those searched and those skipped."""

    kind = "rewrite"
    mode: RewriteMode
    phrases: list[str]
    chosen: list[str]
    skipped: list[SkippedPhrase]


@dataclass(frozen=True, kw_only=True)
class QuerySkipped(Event):
    """A rewrite phrase not searched because an equal query was already issued."""

    kind = "query_skipped"
    round: int
    query: str
    reason: str
    same_as: str


@dataclass(frozen=True, kw_only=True)
class BudgetStop(Event):
    """A budget stopped something; the first such event names the question's `stopped_by`."""

    kind = "budget"
    budget: BudgetName
    limit: int | float
    reason: str


@dataclass(frozen=True, kw_only=True)
class ModelCallStarted(Event):
    """A model call begins (its `model_call` event follows when it returns)."""

    kind = "model_call_started"
    n: int
    purpose: Purpose
    round: int
    max_new_tokens: int


@dataclass(frozen=True, kw_only=True)
class ModelCallEvent(Event):
    """A call as the ledger has it, with its exact prompt and raw output; `error` when it did not finish."""

    kind = "model_call"
    call: ModelCall = field(metadata={_FLATTEN: True})
    messages: list[dict]
    prompt: str
    output: str
    error: str | None = optional()


@dataclass(frozen=True, kw_only=True)
class Selection(Event):
    """Candidates chosen for the context, and why the others were not."""

    kind = "selection"
    selected: list[int]
    not_selected: list[NotSelected]


@dataclass(frozen=True, kw_only=True)
class Expansion(Event):
    """A neighbour added to a passage (`tokens_after`, `total_tokens`) or not (`note`)."""

    kind = "expansion"
    passage_of: int
    side: Side
    chunk_id: int
    reason: str
    merged_with_selected: bool
    added: bool
    note: str | None = optional()
    tokens_after: int | None = optional()
    total_tokens: int | None = optional()


@dataclass(frozen=True, kw_only=True)
class Packing(Event):
    """Passages packed into the answering prompt with exact token counts; those dropped, and why."""

    kind = "packing"
    kept: list[dict]  # {n, chunk_ids, tokens, score, truncated}
    dropped: list[dict]  # {chunk_ids, tokens, score, reason, ...}
    prompt_tokens: int
    max_new_tokens: int
    window: int
    limit: int
    bare_tokens: int
    notes: list[str]
    history_tokens: int | None = optional()  # a conversation's earlier turns in the prompt (within RAG_HISTORY_TOKENS)
    history_turns: int | None = optional()


@dataclass(frozen=True, kw_only=True)
class Context(Event):
    """The passages the answering call saw, numbered as it saw them."""

    kind = "context"
    passages: list[dict]  # rag.ask.types.Passage.to_dict(), as the answering call saw them


@dataclass(frozen=True, kw_only=True)
class Postprocess(Event):
    """What was removed from or changed in the model's answer before attribution."""

    kind = "postprocess"
    removed_markers: list[str]
    removed_links: list[str]
    removed_instructions: list[str]
    removed_captions: list[str]
    figures: list[dict]  # rag.ask.figures.Repair.to_dict()
    untrusted_passages: list[int]
    script: str | None  # the language the answer was converted to, None when unchanged


@dataclass(frozen=True, kw_only=True)
class Attribution(Event):
    """Each answer sentence with the passage that supports it, if any."""

    kind = "attribution"
    sentences: list[dict]  # rag.ask.cite.SentenceSupport.to_dict()


@dataclass(frozen=True, kw_only=True)
class Answer(Event):
    """The final answer (authoritative over the streamed text)."""

    kind = "answer"
    answer: str
    abstained: bool
    stopped_by: BudgetName | None
    complete: bool = True  # False: the answer call was cut, and the answer is what of it could be kept
    incomplete_reason: IncompleteReason | None = optional()


@dataclass(frozen=True, kw_only=True)
class Citations(Event):
    """The citations of the final answer."""

    kind = "citations"
    citations: list[dict]  # rag.ask.types.Citation.to_dict()


@dataclass(frozen=True, kw_only=True)
class Done(Event):
    """The question's totals: usage, the budget that stopped it, rounds and queries."""

    kind = "done"
    usage: dict  # rag.ask.types.usage_of()
    stopped_by: BudgetName | None
    complete: bool = True  # as in `Answer`
    incomplete_reason: IncompleteReason | None = optional()
    rounds: int
    queries: list[str]


EVENTS: tuple[type[Event], ...] = (
    Start, Query, Candidates, Fused, EvidenceDecision, JudgeDecision, RewriteDecision, SupportDecision,
    AbstainDecision, CondenseDecision, Rewrite, QuerySkipped, BudgetStop, ModelCallStarted, ModelCallEvent, Selection, Expansion,
    Packing, Context, Postprocess, Attribution, Answer, Citations, Done,
)
DECISIONS: tuple[type[Decision], ...] = tuple(c for c in EVENTS if issubclass(c, Decision))
KINDS: frozenset[str] = frozenset(c.kind for c in EVENTS)
STEPS: frozenset[str] = frozenset(c.step for c in DECISIONS)


# ------------------------------------------------------------------ reading the JSON back


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _wire_types(cls: type[Event]) -> dict[str, Any]:
    return {name: tp for name, tp, _ in wire_fields(cls)}


def allowed(cls: type[Event], name: str) -> tuple[Any, ...] | None:
    """The values key `name` of the event's JSON can take when its type is a `Literal` (None of an
    optional one left out), else None."""
    tp = _wire_types(cls).get(name)
    if tp is None:
        return None
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    values = [v for o in options if typing.get_origin(o) is Literal for v in typing.get_args(o)]
    return tuple(values) or None


def matches(event: dict, cls: type[Event], **values: Any) -> bool:
    """Whether a recorded event (JSON) is one of `cls` with these field values. Asking for a value
    the class cannot have (a misspelt verdict) raises, so a reader cannot silently match nothing."""
    for name, value in values.items():
        if name not in _wire_types(cls):
            raise ValueError(f"{cls.__name__} has no field {name!r}")
        choices = allowed(cls, name)
        if choices is not None and value not in choices:
            raise ValueError(f"{cls.__name__}.{name} is one of {choices}, not {value!r}")
    if event.get("type") != cls.kind:
        return False
    if getattr(cls, "step", None) is not None and event.get("step") != cls.step:
        return False
    return all(event.get(name) == value for name, value in values.items())


def wire_fields(cls: type[Event]) -> list[tuple[str, Any, bool]]:
    """(name, type, always present) of the event's JSON in order, `seq` and `t_ms` aside: the tags
    as one-value `Literal`s, then the fields (a flattened one's own fields in its place)."""
    out: list[tuple[str, Any, bool]] = [("type", Literal[cls.kind], True)]  # type: ignore[valid-type]
    if getattr(cls, "step", None) is not None:
        out.append(("step", Literal[cls.step], True))  # type: ignore[valid-type]
    for f in fields(cls):
        if f.metadata.get(_FLATTEN):
            inner = _hints(_hints(cls)[f.name])
            out += [(g.name, inner[g.name], True) for g in fields(_hints(cls)[f.name])]
        else:
            out.append((f.name, _hints(cls)[f.name], not f.metadata.get(_OMIT_NONE)))
    return out


VERDICTS: dict[str, tuple[str, ...]] = {c.step: allowed(c, "verdict") or () for c in DECISIONS}
