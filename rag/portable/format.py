"""The export format (`rag-export`, version 1): a folder, its manifest, and the checks made on both.

    <folder>/manifest.json                      written last: a folder without it is no export
    <folder>/collections/<name>/documents.jsonl one JSON object per row, columns by name, id order
                               chunks.jsonl     (text, offsets, prev/next ids: the chunk ids themselves)
                               vectors.ids      int64 little-endian chunk ids, ascending
                               vectors.f32      float32 little-endian, shape [rows, dim] (the manifest's)
                               windows.jsonl    sub-chunk windows (chunk_id, n, char_start, char_end)
                               windows.f32      their vectors, same order, same dim
                               ingestion_jobs.jsonl, conversations.jsonl, questions.jsonl (with traces),
                               model_calls.jsonl, question_feedback.jsonl
    <folder>/keys/api_keys.jsonl                only with --include-keys: keyed hashes, never a key;
    <folder>/keys/secret                        the install's key-hashing secret they were made with

Every member is written and read row by row (or vector batch by vector batch) through a sha256, and
the manifest lists each member's sha256, size and rows. An import checks every member against it
before it writes anything (`export_corrupt`), and refuses a format or version it does not know
(`export_unsupported`). Version 1 readers refuse any other version: a new version is a new number.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rag.errors import RagError

FORMAT = "rag-export"
VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 1 << 20

# Members of each collection's folder, in the order they are written and imported.
JSONL_TABLES = ("documents", "chunks", "windows", "ingestion_jobs", "conversations", "questions", "model_calls",
                "question_feedback")
VECTOR_IDS, VECTORS, WINDOW_VECTORS = "vectors.ids", "vectors.f32", "windows.f32"
KEYS, KEY_SECRET = "keys/api_keys.jsonl", "keys/secret"

_MEMBER_RE = re.compile(r"^(collections/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/[a-z_]+\.(jsonl|ids|f32)|keys/api_keys\.jsonl|keys/secret)$")


class ExportCorrupt(RagError):
    """A member is missing, altered or truncated, or the manifest cannot be read: nothing was imported."""

    code = "export_corrupt"
    status = 422


class ExportUnsupported(RagError):
    """Not a `rag-export`, or a version this code cannot read."""

    code = "export_unsupported"
    status = 422


@dataclass(frozen=True)
class Member:
    sha256: str
    bytes: int
    rows: int


@dataclass
class CollectionEntry:
    """One collection in the export: what its target needs to know before reading its rows."""

    name: str
    description: str
    created_at: str
    embed_model: str | None  # the embedder its vectors come from (None: no vectors)
    embed_dim: int | None
    embed_sha256: str | None  # the registry's checksum of that model's weights, when it is a registry model
    chunk_ids: tuple[int, int] | None  # (lowest, highest) chunk id; None when it has no chunks
    document_ids: tuple[int, int] | None

    def folder(self) -> str:
        return f"collections/{self.name}"


@dataclass
class Manifest:
    source_backend: str  # sqlite | postgres
    created_at: str
    collections: list[CollectionEntry]
    members: dict[str, Member] = field(default_factory=dict)
    keys: bool = False  # the export carries API keys (hashes) and their hashing secret
    format: str = FORMAT
    version: int = VERSION

    def to_json(self) -> str:
        out = {
            "format": self.format, "version": self.version, "created_at": self.created_at,
            "source": {"backend": self.source_backend}, "keys": self.keys,
            "vectors": {"dtype": "<f4", "ids_dtype": "<i8", "order": "ascending chunk id"},
            "collections": [vars(c) for c in self.collections],
            "members": {k: vars(m) for k, m in sorted(self.members.items())},
        }
        return json.dumps(out, ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def load(cls, root: Path) -> Manifest:
        path = root / MANIFEST
        if not path.is_file():
            raise ExportCorrupt(f"{root} has no {MANIFEST}: not an export, or one that did not finish")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExportCorrupt(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ExportUnsupported(f"{root} is not a {FORMAT} folder")
        if data.get("version") != VERSION:
            raise ExportUnsupported(f"{root} is {FORMAT} version {data.get('version')!r}; this version reads {VERSION}")
        try:
            collections = [CollectionEntry(**{**c, "chunk_ids": _span(c["chunk_ids"]), "document_ids": _span(c["document_ids"])})
                           for c in data["collections"]]
            members = {k: Member(**m) for k, m in data["members"].items()}
            return cls(data["source"]["backend"], data["created_at"], collections, members, bool(data.get("keys")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportCorrupt(f"{path} lacks or garbles a field: {exc}") from None


def _span(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


class MemberWriter:
    """A member file written through its checksum: `row()` for JSON Lines, `write()` for binary."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.path = root / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self.path, "wb")
        self._sha = hashlib.sha256()
        self.bytes = self.rows = 0

    def write(self, data: bytes, rows: int) -> None:
        self._file.write(data)
        self._sha.update(data)
        self.bytes += len(data)
        self.rows += rows

    def row(self, obj: dict[str, Any]) -> None:
        self.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n", 1)

    def close(self) -> Member:
        self._file.flush()
        self._file.close()
        return Member(self._sha.hexdigest(), self.bytes, self.rows)


def verify(root: Path, manifest: Manifest) -> None:
    """Every member the manifest lists is there, with its size and sha256 (read in 1 MiB pieces), and
    every member a collection needs is listed. Raises `ExportCorrupt` naming the first that is not."""
    needed = [name for c in manifest.collections for name in member_names(c)]
    for name in needed + ([KEYS, KEY_SECRET] if manifest.keys else []):
        if name not in manifest.members:
            raise ExportCorrupt(f"the manifest does not list {name}")
    for name, member in manifest.members.items():
        if not _MEMBER_RE.match(name):
            raise ExportCorrupt(f"the manifest names an unexpected member {name!r}")
        path = root / name
        if not path.is_file():
            raise ExportCorrupt(f"{name} is missing")
        sha, size = hashlib.sha256(), 0
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                sha.update(block)
                size += len(block)
        if size != member.bytes or sha.hexdigest() != member.sha256:
            raise ExportCorrupt(f"{name} does not match the manifest (sha256 {sha.hexdigest()[:12]}..., {size} bytes; "
                                f"expected {member.sha256[:12]}..., {member.bytes} bytes): altered or truncated")


def member_names(c: CollectionEntry) -> list[str]:
    return [f"{c.folder()}/{t}.jsonl" for t in JSONL_TABLES] + [
        f"{c.folder()}/{n}" for n in (VECTOR_IDS, VECTORS, WINDOW_VECTORS)]


def read_jsonl(root: Path, name: str) -> Any:
    """A JSON Lines member, row by row (already verified; a row that still does not parse is corrupt)."""
    with open(root / name, "rb") as f:
        for n, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ExportCorrupt(f"{name} line {n}: {exc}") from None
            if not isinstance(row, dict):
                raise ExportCorrupt(f"{name} line {n}: not an object")
            yield row
