"""The API's contract for city IT: every status code an /api route can answer, with its body.

Every error the API returns has one body, ``{"detail": "what was wrong and what to do"}``
(``cloud/app.py`` turns domain errors and request validation errors into it). Rather than
repeat the same ``responses=`` on every route, the schema is completed once here, from what
each operation is:

- every operation can answer 400 (a rule of the domain refused the request);
- one with parameters or a body can answer 422 (a field failed validation) and 404 (a
  thing it names does not exist, or the caller may not know it exists);
- one that changes state (POST, PUT, PATCH, DELETE) can answer 409 (it clashes with the
  current state: an overlap, a second approval, a reused Idempotency-Key);
- one that needs a signed-in user (it declares the ``basic`` security scheme) can answer
  401 (no or wrong credentials), 403 (the user's role or scope does not reach it) and 429
  (too many wrong passwords: wait, then try again).

A route adds what only it can answer (503 when a setting is missing, 429 for a rate limit
that is not the login's) with ``responses=`` where it is declared. ``schemathesis`` runs
against the served schema in ``tests/integration/test_api_contract.py`` and finds any
status code or body this misses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response

ERROR_REF = "#/components/schemas/ErrorBody"
_WRITES = frozenset({"post", "put", "patch", "delete"})
_WHY = {
    400: "The request breaks a rule (the detail says which, and what to do).",
    401: "No credentials, or wrong ones: sign in with HTTP Basic.",
    403: "The user's role or scope does not reach this.",
    404: "Not found, or not visible to this user.",
    409: "It clashes with the current state (the detail says with what).",
    422: "A field failed validation (the detail names it).",
    429: "Too many attempts: the detail says when to try again.",
    503: "This deployment has not configured what this needs (the detail names the setting).",
}


class ErrorBody(BaseModel):
    """Every error answer: one sentence of what was wrong and what to do."""

    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can answer ``codes`` beyond the derived ones."""
    return {code: {"model": ErrorBody, "description": _WHY[code]} for code in codes}


def json_or_csv(description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that answers JSON, or CSV with ``?format=csv``."""
    content = {"application/json": {"schema": {"type": "object"}}, "text/csv": {}}
    return {200: {"description": description, "content": content}}


def install(app: FastAPI) -> None:
    """Serve ``app``'s schema with every error answer declared (once, then cached); refuse
    a query parameter the route does not take (or gets twice where it takes one value);
    answer a method a path does not take with 405 and all the methods it does take.

    Call it before the routers are included: the query check is a dependency of every
    route."""
    app.router.dependencies.append(Depends(query_as_declared))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = complete(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            # Starlette names only the first route whose path matched; a path served by
            # several routes (GET here, POST there) takes all their methods
            allowed = _methods_for(app, request)
            if allowed:
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
        return await http_exception_handler(request, exc)

    app.add_exception_handler(HTTPException, method_not_allowed)


def query_as_declared(request: Request) -> None:
    """A query parameter the route does not take (a typo: ``?facilty_id=1``) or one given
    twice where it takes one value (``?site=a&site=b``) is a 422 naming it, never silently
    ignored or the last one taken."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.url.path.startswith("/api/"):
        return
    declared = dict(_query_parameters(route.dependant))
    for name in request.query_params:
        if name not in declared:
            takes = ", ".join(sorted(declared)) or "no query parameters"
            _refuse(name, f"this is not a parameter here (it takes: {takes})")
        if not declared[name] and len(request.query_params.getlist(name)) > 1:
            _refuse(name, "give this once")


def _refuse(name: str, why: str) -> None:
    raise RequestValidationError([{"loc": ("query", name), "msg": why, "type": "value_error"}])


def _query_parameters(dependant: Dependant) -> Iterator[tuple[str, bool]]:
    """Each query parameter's name, and whether it takes several values."""
    for field in dependant.query_params:
        yield field.alias, _is_sequence(field.field_info.annotation)
    for sub in dependant.dependencies:
        yield from _query_parameters(sub)


def _is_sequence(annotation: object) -> bool:
    origin = get_origin(annotation)
    if origin in (list, set, frozenset, tuple):
        return True
    return origin in (Union, UnionType) and any(_is_sequence(arg) for arg in get_args(annotation))


def _methods_for(app: FastAPI, request: Request) -> set[str]:
    """The methods the schema declares for the request's path (every route serving it)."""
    path = request.url.path
    methods: set[str] = set()
    for template, item in app.openapi().get("paths", {}).items():
        pattern = "[^/]+".join(re.escape(part) for part in re.split(r"\{[^/}]+\}", template))
        if re.fullmatch(pattern, path):
            methods |= {method.upper() for method in item}
    return methods


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the derived error answers to each /api operation; one error body throughout."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = ErrorBody.model_json_schema()
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, item in schema.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in item.items():
            if method in _WRITES or method == "get":
                _declare(method, operation)
    return schema


def _declare(method: str, operation: dict[str, Any]) -> None:
    codes = {400}
    if operation.get("parameters") or operation.get("requestBody"):
        codes |= {404, 422}
    if method in _WRITES:
        codes.add(409)
    if operation.get("security"):
        codes |= {401, 403, 429}
    responses = operation.setdefault("responses", {})
    for code in sorted(codes):
        answer = responses.setdefault(str(code), {"description": _WHY[code]})
        answer["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}
