"""FastAPI application factory. Routes live in one module per resource and call the services the Runtime holds."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from api import console, openapi
from api.schemas import COLLECTION_NAME_PATTERN, NOT_BLANK_PATTERN
from api.security import Guards, error_response
from rag import __version__
from rag.errors import RagError
from rag.service.runtime import Runtime
from rag.settings import Settings
from rag.store import InvalidName, validate_collection_name

log = logging.getLogger("rag.api")


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or Settings()
    mcp_endpoint = _mcp_endpoint(lambda: app.state.runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        rt = runtime or Runtime(settings)
        if runtime is None:
            rt.start()
        if rt.shared_store:  # one Postgres connection per request thread: bound them together
            anyio.to_thread.current_default_thread_limiter().total_tokens = rt.settings.database_pool_size
        app.state.runtime = rt
        try:
            async with mcp_endpoint.lifespan():
                yield
        finally:
            rt.close()

    # /docs and /redoc are the console's (served from local assets, api/console), not FastAPI's CDN pages.
    app = FastAPI(title="rag", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    _install_error_handlers(app)
    openapi.install(app, settings)
    if settings.cors_origin_list():
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list(), allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(Guards, settings=settings)  # outermost: Host, origin and body size before anything else

    from api import collections, conversations, documents, health, jobs, keys, openai_compat, questions

    for module in (health, collections, documents, jobs, questions, conversations, openai_compat, keys):
        app.include_router(module.router)
    app.router.routes.append(Route("/mcp", mcp_endpoint, methods=["GET", "POST", "DELETE"]))
    console.install(app)
    if settings.auth == "off":
        log.warning("RAG_AUTH=off: every client that can reach this server may read, change and delete everything")
    return app


def _mcp_endpoint(runtime_of):
    """The MCP tools (`api.mcp`) over streamable HTTP at `/mcp`, each call as the key of its request."""
    from api import mcp

    return mcp.HttpEndpoint(mcp.build(runtime_of, mcp.header_principal(runtime_of)))


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def _error(request: Request, status: int, code: str, message: str, **extra) -> dict:
    """The error body: OpenAI's shape on the OpenAI-compatible paths (its clients read `type`), ours elsewhere
    (both carry `code` and `message`)."""
    from api.openai_compat import OPENAI_PATHS, openai_error

    if request.url.path in OPENAI_PATHS:
        body = openai_error(code, message, status)
        body["error"].update(extra)
        return body
    return error_body(code, message, **extra)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError):
        return error_response(exc, _error(request, exc.status, exc.code, exc.message))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        if named := named_error(exc.errors()):
            return JSONResponse(_error(request, named.status, named.code, named.message), status_code=named.status)
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse(_error(request, 422, "invalid_request", "request body or parameters are invalid",
                                   details=details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and not getattr(exc, "code", None):
            # A body FastAPI cannot even decode: as invalid as one that fails validation.
            return JSONResponse(_error(request, 422, "invalid_request", str(exc.detail)), status_code=422)
        if exc.status_code == 404 and not getattr(exc, "code", None) and (page := console.not_found_page(request)):
            return page
        code = getattr(exc, "code", None) or {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return JSONResponse(_error(request, exc.status_code, code, str(exc.detail)), status_code=exc.status_code,
                            headers=headers or None)


def named_error(errors) -> RagError | None:
    """A failure that has its own code where the service checks it too: a collection name failing its
    pattern (wherever it was: path, query, body) is the store's 400 `invalid_collection_name`, a blank
    question the 422 `empty_question`. Only when nothing else failed; otherwise `invalid_request`."""
    patterns = {(e.get("ctx") or {}).get("pattern") for e in errors if e.get("type") == "string_pattern_mismatch"}
    if not errors or len(patterns) != 1 or any(e.get("type") != "string_pattern_mismatch" for e in errors):
        return None
    if patterns == {NOT_BLANK_PATTERN}:
        return RagError("the question is empty", code="empty_question", status=422)
    if patterns != {COLLECTION_NAME_PATTERN}:
        return None
    name = errors[0].get("input")
    try:
        validate_collection_name(name)
    except InvalidName as exc:
        return exc
    return InvalidName(f"invalid collection name {name!r}")  # what Python's `$` lets through (a final newline)


def _allowed_methods(request: Request) -> str:
    """Every method the path answers: Starlette's 405 names only the first route that matched the path."""
    methods: set[str] = set()
    for route in openapi.flat_routes(request.app.routes):
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= set(route_methods)
    return ", ".join(sorted(methods))
