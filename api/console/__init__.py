"""The audit console (one static page served by the service itself, with no build step) and the
API reference pages /docs (Swagger UI) and /redoc (ReDoc), whose assets come from the
fastapi-offline package instead of a CDN.

The page reads and writes only through the public `/v1` API (its wire module is
`static/js/api.js`), so it has no endpoints of its own: these routes hand out files. Every
path the page routes to returns the same HTML, so a trace has a stable URL (`/questions/{id}`)
that survives a reload. Document text in traces is untrusted; the content security policy
forbids inline and foreign scripts, so even a page bug that inserted it as HTML could not run it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_PREFIX = "/docs-assets"

# Swagger UI starts from an inline script and ReDoc runs a blob: worker; neither may load anything
# from another host. ReDoc's bundle hard-codes its sidebar logo's CDN address: the copy we serve
# has it replaced by an empty local image (`redoc_bundle`), so nothing is even tried.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; style-src 'self' "
            "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'")

# 'unsafe-inline' styles only: Chart.js sets inline styles on its canvas.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def _page(status_code: int = 200) -> FileResponse:
    return FileResponse(STATIC / "index.html", status_code=status_code, media_type="text/html; charset=utf-8",
                        headers=_HEADERS)


def not_found_page(request: Request) -> FileResponse | None:
    """The console's page (which says "Not found") for a browser that navigated to an unknown address;
    None for anything else, which gets the JSON 404: API clients, `/v1` paths, methods other than GET."""
    navigating = "text/html" in request.headers.get("accept", "") or request.headers.get("sec-fetch-mode") == "navigate"
    if request.method != "GET" or not navigating or request.url.path.startswith(("/v1/", "/mcp")):
        return None
    return _page(404)


@router.get("/")
def home() -> FileResponse:
    return _page()


@router.get("/collections/{name}")
def collection_page(name: str) -> FileResponse:
    return _page()


@router.get("/questions/{qid}")
def question_page(qid: str) -> FileResponse:
    return _page()


@router.get("/ask")
def ask_page() -> FileResponse:
    return _page()


@router.get("/chat")
def chat_page() -> FileResponse:
    return _page()


@router.get("/search")
def search_page() -> FileResponse:
    return _page()


@router.get("/usage")
def usage_page() -> FileResponse:
    return _page()


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(openapi_url=request.app.openapi_url, title="rag API · Swagger UI",
                               swagger_js_url=f"{DOCS_PREFIX}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_PREFIX}/swagger-ui.css",
                               swagger_favicon_url=f"{DOCS_PREFIX}/favicon.png")
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    page = get_redoc_html(openapi_url=request.app.openapi_url, title="rag API · ReDoc",
                          redoc_js_url=f"{DOCS_PREFIX}/redoc.standalone.js",
                          redoc_favicon_url=f"{DOCS_PREFIX}/favicon.png", with_google_fonts=False)
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page


REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_IMAGE = b"data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="  # 1x1, transparent


@cache
def _redoc_bundle() -> bytes:
    return (DOCS_ASSETS / "redoc.standalone.js").read_bytes().replace(REDOC_CDN_LOGO, _EMPTY_IMAGE)


# Served ahead of the static folder below (routes come before mounts).
@router.get(f"{DOCS_PREFIX}/redoc.standalone.js")
def redoc_bundle() -> Response:
    return Response(_redoc_bundle(), media_type="text/javascript; charset=utf-8",
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


class _StaticWithHeaders(StaticFiles):
    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers.update({"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})
        return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(PREFIX, _StaticWithHeaders(directory=STATIC), name="console")
    app.mount(DOCS_PREFIX, _StaticWithHeaders(directory=DOCS_ASSETS), name="docs-assets")
