"""FastAPI application factory. Routes live in one module per resource and call the services the Runtime holds."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.security import Guards
from rag import __version__
from rag.errors import RagError
from rag.service.runtime import Runtime
from rag.settings import Settings

log = logging.getLogger("rag.api")


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        rt = runtime or Runtime(settings)
        if runtime is None:
            rt.start()
        app.state.runtime = rt
        try:
            yield
        finally:
            rt.close()

    # /docs and /redoc are the console's (served from local assets, api/console), not FastAPI's CDN pages.
    app = FastAPI(title="rag", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    _install_error_handlers(app)
    if settings.cors_origin_list():
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list(), allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(Guards, settings=settings)  # outermost: Host, origin and body size before anything else

    from api import collections, console, documents, health, jobs, keys, questions

    for module in (health, collections, documents, jobs, questions, keys):
        app.include_router(module.router)
    console.install(app)
    if settings.auth == "off":
        log.warning("RAG_AUTH=off: every client that can reach this server may read, change and delete everything")
    return app


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def _rag_error(_: Request, exc: RagError):
        headers = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if getattr(exc, "retry_after", None):
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse(error_body("invalid_request", "request body or parameters are invalid", details=details),
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        code = getattr(exc, "code", None) or {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)
