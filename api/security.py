"""Who is calling, and from where: the key check every `/v1` route depends on, and the guards in
front of the app (Host allow-list, browser origins, body size before parsing)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.errors import RagError
from rag.service.auth import OPEN, Principal, Unauthorized
from rag.settings import Settings

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# Declares the key in the OpenAPI (`security` on every operation that depends on `principal`); the
# check itself is `bearer` below, so a missing or malformed header is our 401, not FastAPI's 403.
_scheme = HTTPBearer(auto_error=False, scheme_name="apiKey")


def principal(request: Request, _: HTTPAuthorizationCredentials | None = Depends(_scheme)) -> Principal:
    """The caller's key (401 without a valid one), counted against its request rate."""
    runtime = request.app.state.runtime
    who = OPEN if runtime.settings.auth == "off" else bearer(request)
    if who is None:
        raise Unauthorized("send an API key: Authorization: Bearer <key> (the admin key of a fresh install is in "
                           "<data_dir>/admin.key)")
    runtime.quotas.request(who.key_id)
    return who


def error_response(exc: RagError, body: dict | None = None) -> JSONResponse:
    """A refused request's JSON (`{"error": {"code", "message"}}`, or `body` in another shape: OpenAI's on
    its compatible paths) with the headers its status calls for."""
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status == 429:
        headers["Retry-After"] = str(max(1, int(getattr(exc, "retry_after", None) or 1)))
    return JSONResponse(body or {"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status,
                        headers=headers)


def bearer(request: Request) -> Principal | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return request.app.state.runtime.keys.authenticate(token.strip())


# A hostname or an IP literal, then an optional port: nothing may follow `]` but a port.
_HOST_HEADER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?")
_UPLOAD_ROUTE = re.compile(r"/v1/collections/[^/]+/documents/?")  # the one route that takes files


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body arrives; an HTTPException so body parsers pass it on unchanged."""

    code = "body_too_large"

    def __init__(self, message: str):
        super().__init__(status_code=413, detail=message)


class Guards:
    """ASGI middleware: Host allow-list (DNS rebinding), cross-origin state changes refused unless the
    origin is allowed (CORS is a separate layer), and request bodies cut off at their limit while they
    arrive, whatever Content-Length claims."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings
        self.hosts = {h.lower() for h in settings.host_allow_list()}
        self.origins = set(settings.cors_origin_list())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        names = [k.decode("latin-1").lower() for k, _ in scope["headers"]]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        repeated = sorted({n for n in ("host", "origin") if names.count(n) > 1})
        if repeated:  # which one would count differs between proxies and us: refuse rather than guess
            return await _refuse(scope, receive, send, 400, "invalid_header",
                                 f"repeated {' and '.join(repeated)} header: send each once")
        if not _HOST_HEADER.fullmatch(headers.get("host", "").strip()):
            return await _refuse(scope, receive, send, 400, "invalid_host",
                                 f"malformed Host header {headers.get('host', '')!r}")
        host = _hostname(headers.get("host", ""))
        if "*" not in self.hosts and host not in self.hosts:
            return await _refuse(scope, receive, send, 400, "invalid_host",
                                 f"Host {host!r} is not served here (RAG_ALLOWED_HOSTS)")
        origin = headers.get("origin")
        if origin and scope["method"] not in _SAFE_METHODS and not self._same_site(origin, headers.get("host", "")):
            return await _refuse(scope, receive, send, 403, "cross_origin_refused",
                                 f"requests from {origin!r} may not change anything here (RAG_CORS_ORIGINS)")
        # The route decides the limit, never the Content-Type a client claims: a keyless
        # `multipart/form-data` POST to a JSON route once got the upload limit and was read whole before the 401.
        upload = scope["method"] == "POST" and _UPLOAD_ROUTE.fullmatch(scope.get("path", "")) is not None
        limit = self.settings.max_request_bytes if upload else self.settings.max_json_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await _refuse(scope, receive, send, 413, "body_too_large",
                                 f"the request body is over the {limit:,}-byte limit")
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(f"the request body is over the {limit:,}-byte limit")
            return message

        await self.app(scope, limited, send)

    def _same_site(self, origin: str, host_header: str) -> bool:
        origin = origin.rstrip("/")
        return origin in self.origins or urlsplit(origin).netloc.lower() == host_header.lower()


def _hostname(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    await JSONResponse({"error": {"code": code, "message": message}}, status_code=status)(scope, receive, send)
