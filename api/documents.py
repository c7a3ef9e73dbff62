"""Uploads, documents and chunks. Upload checks that need no parsing happen here, before a job exists."""

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response, UploadFile
from starlette.exceptions import HTTPException

from api.openapi import EMBEDDING
from api.openapi import errors as error_responses
from api.security import BodyTooLarge, principal
from api.schemas import (ChunkContextOut, ChunkId, ChunkOut, ChunksOut, CollectionPath, DocumentDetailOut, DocumentId,
                         DocumentOut, DocumentsOut, JobListOut, JobOut, JobsOut, SearchIn, SearchOut)
from ingest import errors
from ingest.uploads import Upload
from rag.errors import IngestError, RagError
from rag.service.auth import Principal
from rag.service.ingesting import Submitted

router = APIRouter(prefix="/v1/collections/{name}", tags=["documents"])

_READ = 1024 * 1024


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    """The file's bytes, or its first `limit + 1` when it is larger: enough for the service to refuse
    it as `file_too_large` without holding more of it."""
    parts, size = [], 0
    while size <= limit and (block := await upload.read(min(_READ, limit + 1 - size))):
        size += len(block)
        parts.append(block)
    return b"".join(parts)


def _header_too_long(exc: BaseException) -> bool:
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if "Maximum header size exceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


# The route reads the form itself (within its limits), so FastAPI cannot see the body: declared here.
_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {
        "type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"},
        "description": "One or more files (.pdf .txt .md .markdown .html .htm .docx .docm .xlsx .xlsm .csv .pptx .pptm .epub "
                       ".eml .msg .png .jpg .jpeg .tif .tiff), each a part named `files` with its "
                       "file name; more than RAG_MAX_FILES_PER_REQUEST is 413 `too_many_files`, a file over "
                       "RAG_MAX_UPLOAD_BYTES 413 `file_too_large`."}},
}}}}}
_READ_404 = error_responses({404: ["collection_not_found"]})


@router.post("/documents", status_code=202, response_model=JobsOut, openapi_extra=_UPLOAD_BODY, responses=error_responses({
    400: ["bad_filename"], 403: ["forbidden"], 404: ["collection_not_found"],
    413: ["file_too_large", "too_many_files"], 415: ["unsupported_type"],
    422: ["no_files", "empty_file", "pdf_malformed"], 429: ["queue_full"]}))
async def upload_documents(name: CollectionPath, request: Request, who: Principal = Depends(principal),
                           all_or_nothing: bool = Query(False, description="Refuse the whole request when any "
                                                        "file is refused (nothing is queued).")) -> JobsOut:
    """Queues one job per good file (202) and lists each refused file with its error under
    `rejected`; when every file is refused (or any, with `all_or_nothing`), the first file's error
    is the answer and nothing is queued. Parsing and indexing happen in the job (poll `/v1/jobs/{id}`)."""
    who.require(name, "write")
    runtime = request.app.state.runtime
    limit = runtime.settings.max_upload_bytes
    try:
        form = await request.form(max_files=runtime.settings.max_files_per_request)
    except HTTPException as exc:
        if _header_too_long(exc):
            # The multipart parser caps a part's header line (~4 KB); in practice only an
            # over-long file name gets there, and names over 255 characters are refused anyway.
            raise errors.bad_filename("a part header is over 4 KB (file name too long; at most 255 characters)") from None
        if exc.status_code == 400 and "Too many files" in str(exc.detail):
            raise IngestError(f"at most {runtime.settings.max_files_per_request} files per request (RAG_MAX_FILES_PER_REQUEST)",
                              code="too_many_files", status=413) from None
        if isinstance(exc, BodyTooLarge) or exc.status_code != 400:
            raise
        raise RagError(f"the multipart body cannot be read: {exc.detail}", code="invalid_request", status=422) from None
    files = [f for f in form.getlist("files") if not isinstance(f, str)]
    if not files:
        raise IngestError("send one or more files in the multipart field 'files'", code="no_files")
    uploads = [Upload(f.filename or "", await _read_limited(f, limit)) for f in files]
    if all_or_nothing:
        submitted = Submitted(runtime.ingest.submit(name, uploads), [])
    else:
        submitted = runtime.ingest.submit_each(name, uploads)
    runtime.quotas.uploaded(who.key_id, sum(int(j.progress.get("bytes", 0)) for j in submitted.jobs))
    return JobsOut.of(submitted)


@router.get("/jobs", response_model=JobListOut, responses=_READ_404)
def list_jobs(name: CollectionPath, request: Request,
              status: Literal["queued", "running", "done", "failed", "cancelled"] | None = Query(
                  None, description="Only jobs with this status."),
              limit: int = Query(100, ge=1, le=1000), who: Principal = Depends(principal)) -> JobListOut:
    """The collection's ingestion jobs, newest first: a failed upload stays listed with its error."""
    who.require(name)
    jobs = request.app.state.runtime.ingest.list_jobs(name, status=status, limit=limit)
    return JobListOut(jobs=[JobOut.of(j) for j in jobs])


@router.get("/documents", response_model=DocumentsOut, responses=_READ_404)
def list_documents(name: CollectionPath, request: Request, who: Principal = Depends(principal)) -> DocumentsOut:
    who.require(name)
    docs = request.app.state.runtime.collections.list_documents(name)
    return DocumentsOut(documents=[DocumentOut.model_validate(d) for d in docs])


@router.get("/documents/{document_id}", response_model=DocumentDetailOut,
            responses=error_responses({404: ["collection_not_found", "document_not_found"]}))
def get_document(name: CollectionPath, document_id: DocumentId, request: Request, who: Principal = Depends(principal)) -> DocumentDetailOut:
    who.require(name)
    found = request.app.state.runtime.collections.get_document(name, document_id)
    return DocumentDetailOut(**DocumentOut.model_validate(found.document).model_dump(), pages=found.pages)


@router.get("/documents/{document_id}/chunks", response_model=ChunksOut,
            responses=error_responses({404: ["collection_not_found", "document_not_found"]}))
def list_chunks(name: CollectionPath, document_id: DocumentId, request: Request, who: Principal = Depends(principal)) -> ChunksOut:
    who.require(name)
    chunks = request.app.state.runtime.collections.list_chunks(name, document_id)
    return ChunksOut(chunks=[ChunkOut.model_validate(c) for c in chunks])


@router.get("/chunks/{chunk_id}", response_model=ChunkContextOut,
            responses=error_responses({404: ["collection_not_found", "chunk_not_found"]}))
def get_chunk(name: CollectionPath, chunk_id: ChunkId, request: Request,
              neighbours: int = Query(1, ge=0, le=5, description="Chunks of the same document on each side."),
              who: Principal = Depends(principal)) -> ChunkContextOut:
    """A chunk with its neighbours in its document, and the document: a citation shown in context."""
    who.require(name)
    return ChunkContextOut.model_validate(request.app.state.runtime.collections.chunk_context(name, chunk_id, neighbours))


@router.delete("/documents/{document_id}", status_code=204,
               responses=error_responses({403: ["forbidden"], 404: ["collection_not_found", "document_not_found"]}))
def delete_document(name: CollectionPath, document_id: DocumentId, request: Request, who: Principal = Depends(principal)) -> Response:
    who.require(name, "write")
    request.app.state.runtime.collections.delete_document(name, document_id)
    return Response(status_code=204)


@router.post("/search", response_model=SearchOut,
             responses=error_responses({404: ["collection_not_found"], **EMBEDDING}))
def search(name: CollectionPath, body: SearchIn, request: Request, who: Principal = Depends(principal)) -> SearchOut:
    """Hybrid retrieval only (no model call): each retriever's score and rank, and the fused score."""
    who.require(name)
    return SearchOut.of(request.app.state.runtime.searcher.search_found(name, body.query, body.k))
