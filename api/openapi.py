"""The OpenAPI document, made to tell the truth: every status an operation can answer, each with the
error body it really has (`api.schemas.ErrorOut`, codes listed), and this server's own limits.

Routes declare what is theirs with `errors(...)` (a 404's codes, a 409, a 415...). What every route
of a kind answers is added here, from what the document already says about it:

- every operation: 400 `invalid_host` and 413 `body_too_large` (`api.security.Guards`, before routing);
- POST and DELETE: 403 `cross_origin_refused`;
- an operation with a key (`security`): 401 `unauthorized` (`WWW-Authenticate`), 429 `rate_limited`;
- parameters or a body: 422 `invalid_request`; a collection name among them: 400 `invalid_collection_name`;
- every 429: `Retry-After`;
- with PostgreSQL (`RAG_DATABASE_URL`), every operation: 503 `store_unavailable` (the database is
  unreachable; every route reads it, and the key itself is looked up in it, `/health`'s too).

Codes that only a configuration can cause are listed only under it: `embedder_unavailable` (503)
and `embedding_failed` (502), which the routes that embed a query declare, need `RAG_EMBEDDER_URL`;
a status left without codes is not listed.

FastAPI's default 422 (`HTTPValidationError`, a body this API never sends) is replaced. Settings
that are ceilings (budgets, answer tokens) become the schema's maximums, so a
request the document calls valid is one this server accepts.
"""

from __future__ import annotations

import copy
from http import HTTPStatus
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pydantic import BaseModel

from api.schemas import COLLECTION_NAME_PATTERN, ErrorOut, TraceOut
from rag.settings import Settings
from rag.store import StoreLocation

_CODES = "x-error-codes"
_REF = "#/components/schemas/"
_UNSAFE = {"post", "put", "patch", "delete"}
# Bodies a route answers as stored JSON, passed through untouched (a response model would re-encode
# them): the model that describes each is documented as its 200 here.
STORED_BODIES: dict[tuple[str, str], type[BaseModel]] = {("get", "/v1/questions/{qid}/trace"): TraceOut}
# What a route that embeds the query declares (search, questions, chat): errors of an embeddings server.
EMBEDDING = {502: ["embedding_failed"], 503: ["embedder_unavailable"]}
# Codes only a setting makes possible: listed where that setting is on.
CONFIGURED: dict[str, Callable[[Settings], bool]] = {
    "embedder_unavailable": lambda s: bool(s.embedder_url),
    "embedding_failed": lambda s: bool(s.embedder_url),
}


def errors(spec: dict[int, list[str] | tuple[str, ...]]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the error codes it answers, e.g.
    `errors({404: ["collection_not_found"], 409: ["collection_protected"]})`."""
    return {status: {"model": ErrorOut, "description": HTTPStatus(status).phrase, _CODES: list(codes)}
            for status, codes in spec.items()}


def flat_routes(routes) -> list:
    """Every route, those of included routers too: FastAPI 0.16x keeps an included router as one
    entry of `app.routes` (walked by `iter_route_contexts`); earlier versions list its routes flat."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return list(routes)
    return list(iter_route_contexts(routes))


def install(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            app.openapi_schema = _truthful(schema, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _truthful(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method.lower() in {"get", "post", "put", "patch", "delete", "head", "options", "trace"}:
                _operation_errors(method.lower(), op, schemas, settings)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for name, scheme in components.get("securitySchemes", {}).items():
        scheme["description"] = ("An API key: `Authorization: Bearer rag_<id>_<secret>`. A fresh install writes "
                                 "its admin key to `<data_dir>/admin.key`.")
    _ceilings(schemas, schema.get("paths", {}), settings)
    _stored_bodies(schemas, schema.get("paths", {}))
    return schema


def _stored_bodies(schemas: dict[str, Any], paths: dict[str, Any]) -> None:
    for (method, path), model in STORED_BODIES.items():
        op = paths.get(path, {}).get(method)
        if op is None:
            raise LookupError(f"{method.upper()} {path} is documented in STORED_BODIES but not routed")
        body = model.model_json_schema(ref_template=_REF + "{model}")
        defs = body.pop("$defs", {})
        _name_nested_unions(body, defs)
        for name, definition in {**defs, model.__name__: body}.items():
            if schemas.setdefault(name, definition) != definition:
                raise ValueError(f"two schemas named {name}")
        op["responses"]["200"]["content"] = {"application/json": {"schema": {"$ref": _REF + model.__name__}}}


def _name_nested_unions(node: Any, defs: dict[str, Any]) -> None:
    """A discriminator's mapping names schemas (ReDoc fails on anything else), but pydantic writes a
    union nested in a discriminated union (the decisions, by `step`, inside the events, by `type`) in
    place: each such union becomes a schema of its own, named by its title."""
    if isinstance(node, list):
        for item in node:
            _name_nested_unions(item, defs)
        return
    if not isinstance(node, dict):
        return
    mapping = node.get("discriminator", {}).get("mapping", {})
    for key, target in list(mapping.items()):
        if isinstance(target, dict):
            name = target["title"]
            defs[name] = target
            mapping[key] = _REF + name
            node["oneOf"] = [{"$ref": _REF + name} if choice == target else choice for choice in node.get("oneOf", [])]
    for value in list(node.values()):
        _name_nested_unions(value, defs)


def _operation_errors(method: str, op: dict[str, Any], schemas: dict[str, Any], settings: Settings) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    default = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if default.get("$ref") == _REF + "HTTPValidationError":
        del responses["422"]  # FastAPI's own, with a body this API never sends
    codes: dict[int, list[str]] = {int(s): list(r.pop(_CODES, [])) for s, r in responses.items() if s.isdigit()}

    def add(status: int, code: str) -> None:
        if code not in codes.setdefault(status, []):
            codes[status].append(code)

    add(400, "invalid_host")
    add(413, "body_too_large")
    if method in _UNSAFE:
        add(403, "cross_origin_refused")
    if settings.auth == "off":
        op.pop("security", None)
    if op.get("security"):
        add(401, "unauthorized")
        add(429, "rate_limited")
    if op.get("parameters") or op.get("requestBody"):
        add(422, "invalid_request")
    if _names_a_collection(op, schemas):
        add(400, "invalid_collection_name")
    if StoreLocation.from_settings(settings).shared:
        add(503, "store_unavailable")
    for status in list(codes):
        codes[status] = [c for c in codes[status] if c not in CONFIGURED or CONFIGURED[c](settings)]
        if status >= 400 and not codes[status]:
            del codes[status]
            responses.pop(str(status), None)

    for status in sorted(codes):
        if status < 400:
            continue
        listed = codes[status]
        response = responses.setdefault(str(status), {})
        response["description"] = f"{HTTPStatus(status).phrase}: " + ", ".join(f"`{c}`" for c in listed) + "."
        response["content"] = {"application/json": {"schema": {
            "allOf": [{"$ref": _REF + "ErrorOut"}],
            "properties": {"error": {"properties": {"code": {"enum": listed}}}},
        }}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {
                "description": "`Bearer`", "required": True, "schema": {"type": "string"}}}
        if status == 429:
            response["headers"] = {"Retry-After": {
                "description": "Seconds to wait before trying again.", "required": True,
                "schema": {"type": "integer", "minimum": 1}}}
    op["responses"] = dict(sorted(responses.items()))


def _names_a_collection(op: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """Whether a parameter or the body carries a collection name (its pattern), refs followed."""
    seen: set[str] = set()

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_REF) and ref not in seen:
                seen.add(ref)
                if walk(schemas.get(ref[len(_REF):], {})):
                    return True
            if node.get("pattern") == COLLECTION_NAME_PATTERN:
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(op.get("parameters", [])) or walk(op.get("requestBody", {}))


def _ceilings(schemas: dict[str, Any], paths: dict[str, Any], settings: Settings) -> None:
    """Settings that are ceilings, as maximums: a request above one is refused (422), so the schema says so."""
    limits = {
        ("BudgetIn", "max_model_calls"): settings.max_model_calls,
        ("BudgetIn", "max_prompt_tokens"): settings.max_prompt_tokens,
        ("BudgetIn", "max_rounds"): settings.max_rounds,
        ("BudgetIn", "timeout_s"): settings.timeout_s,
        ("OptionsIn", "max_answer_tokens"): settings.max_answer_tokens,
    }
    for (model, field), ceiling in limits.items():
        prop = schemas.get(model, {}).get("properties", {}).get(field, {})
        for branch in prop.get("anyOf", [prop]):
            if branch.get("type") in ("integer", "number") and "maximum" in branch:
                branch["maximum"] = min(branch["maximum"], ceiling)
    upload = paths.get("/v1/collections/{name}/documents", {}).get("post", {})
    files = (upload.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
             .get("schema", {}).get("properties", {}).get("files"))
    if files is not None:  # a limit with its own 413, not a `maxItems` (which would mean 422)
        files["description"] += (f" Here: at most {settings.max_files_per_request} files, "
                                 f"{settings.max_upload_bytes:,} bytes each.")
