"""The OpenAPI 3.1 document, generated from the routes' declarations and pydantic models."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pygw.http.errors import reason
from pygw.http.routing import Route

REF = "#/components/schemas/{model}"


def _models_of(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_of(arg)
    return found


def _schema_for(annotation: Any) -> dict[str, Any]:
    if annotation is None:
        return {}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"$ref": REF.format(model=annotation.__name__)}
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return {"type": "array", "items": _schema_for(item)}
    return {}


def build_openapi(
    routes: list[Route], *, title: str, version: str, description: str, error_model: type[BaseModel]
) -> dict[str, Any]:
    visible = [r for r in routes if r.include_in_schema]
    models: dict[str, type[BaseModel]] = {error_model.__name__: error_model}
    for r in visible:
        for m in _models_of(r.body) + _models_of(r.response_model):
            models[m.__name__] = m
    _, top = models_json_schema([(m, "validation") for m in models.values()], ref_template=REF)
    schemas = top.get("$defs", {})

    paths: dict[str, dict[str, Any]] = {}
    for r in visible:
        op: dict[str, Any] = {
            "operationId": f"{r.method.lower()}_{r.endpoint.__name__}",
            "summary": r.summary or r.endpoint.__name__.replace("_", " "),
            "tags": list(r.tags),
        }
        if r.description:
            op["description"] = r.description
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in r.param_names
        ]
        params += [
            {"name": n, "in": "query", "required": req, "description": d, "schema": {}}
            for n, d, req in r.query
        ]
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema_for(r.body)}},
            }
        responses: dict[str, Any] = {
            str(r.status_code): {
                "description": "Successful Response",
                "content": {"application/json": {"schema": _schema_for(r.response_model)}},
            }
        }
        error_schema = {"$ref": REF.format(model=error_model.__name__)}
        for code in sorted(set(r.errors) | ({401} if r.auth else set())):
            responses[str(code)] = {
                "description": reason(code),
                "content": {"application/json": {"schema": error_schema}},
            }
        op["responses"] = responses
        if r.auth in ("user", "admin"):
            op["security"] = [{"bearerAuth": []}]
        elif r.auth == "server":
            op["security"] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
        # ``{rest:path}`` is a router template; OpenAPI spells the parameter ``{rest}``.
        paths.setdefault(r.path.replace(":path}", "}"), {})[r.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
