"""What parsers produce and the chunker consumes. Offsets are character offsets into `ParsedDocument.text`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BlockKind = Literal["heading", "paragraph", "list_item", "code", "table"]


@dataclass(frozen=True)
class Block:
    """A structural unit. Chunks never merge text across a heading; they prefer to break between blocks."""

    kind: BlockKind
    start: int
    end: int
    section_path: tuple[str, ...] = ()
    page: int | None = None  # 1-based page number for PDFs


@dataclass(frozen=True)
class PageSpan:
    number: int  # 1-based
    start: int
    end: int


@dataclass
class ParsedDocument:
    """Normalised text (NFC, invisible/bidi/tag characters removed) plus its structure."""

    text: str
    format: str  # an `ingest.detect.Format`
    blocks: list[Block] = field(default_factory=list)
    pages: list[PageSpan] = field(default_factory=list)
    title: str | None = None
    encoding: str | None = None  # detected encoding for text formats

    @property
    def page_count(self) -> int:
        return len(self.pages)


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before it has a database id. `token_count` is in the embedder's own tokens."""

    ordinal: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    page: int | None = None
    section_path: tuple[str, ...] = ()
