"""Routes: method + path template -> endpoint, with what the endpoint needs declared up front
(authentication, body model, response model) so the application validates before calling it and
the OpenAPI document is generated from the same declarations."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from pygw.transport.types import HTTPRequest

Auth = Literal["user", "admin", "server"] | None
"""``user``: any valid access token; ``admin``: an access token with role admin;
``server``: an admin token or a configured API key (``X-API-Key``)."""

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class Context:
    """What an endpoint receives: the request plus what was resolved for it."""

    __slots__ = ("api_key", "body", "claims", "request")

    def __init__(self, request: HTTPRequest) -> None:
        self.request = request
        self.claims: Any = None
        """The verified access token's claims (``pygw._native.Claims``) when authenticated."""
        self.api_key: str | None = None
        self.body: Any = None
        """The validated body model instance, if the route declares one."""

    @property
    def params(self) -> dict[str, str]:
        return self.request.params


Endpoint = Callable[[Context, Any], Awaitable[Any]]
"""``endpoint(ctx, services)``: the services object is the one the application was built with
(see :mod:`pygw.api.services`)."""


@dataclass(slots=True)
class Route:
    method: str
    path: str
    endpoint: Endpoint
    auth: Auth = None
    body: type[BaseModel] | None = None
    response_model: Any = None
    status_code: int = 200
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()
    """Error statuses this route documents (the envelope schema)."""
    query: tuple[tuple[str, str, bool], ...] = ()
    """(name, description, required) of query parameters, for the docs."""
    include_in_schema: bool = True
    all_headers: bool = False
    """The endpoint needs every request header (a proxy), not just the usual few."""
    param_names: tuple[str, ...] = field(default=())
    pattern: re.Pattern[str] | None = None


_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)(:path)?\}")


def _compile(path: str) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
    names = tuple(m.group(1) for m in _PARAM.finditer(path))
    if not names:
        return None, ()
    regex = "^"
    pos = 0
    for m in _PARAM.finditer(path):
        regex += re.escape(path[pos : m.start()])
        regex += f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)"
        pos = m.end()
    regex += re.escape(path[pos:]) + "$"
    return re.compile(regex), names


def _first_segment(path: str) -> str:
    return path[1:].split("/", 1)[0]


class Router:
    """Static paths resolve with one dict lookup; templated ones by regex, in declaration order,
    among the routes sharing the path's first segment (``/sessions/...``)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._static: dict[tuple[str, str], Route] = {}
        self._static_paths: set[str] = set()
        self._dynamic: dict[str, list[Route]] = {}

    def add(self, route: Route) -> Route:
        route.pattern, route.param_names = _compile(route.path)
        self.routes.append(route)
        if route.pattern is None:
            key = (route.method, route.path)
            if key in self._static:
                raise ValueError(f"duplicate route {route.method} {route.path}")
            self._static[key] = route
            self._static_paths.add(route.path)
        else:
            self._dynamic.setdefault(_first_segment(route.path), []).append(route)
        return route

    def route(self, method: str, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            methods = METHODS[:-2] if method == "ANY" else (method,)
            for m in methods:
                self.add(Route(m, path, endpoint, **options))
            return endpoint

        return register

    def get(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("POST", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self.route("DELETE", path, **options)

    def include(self, other: Router) -> None:
        for r in other.routes:
            self.add(dataclasses.replace(r, pattern=None, param_names=()))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, path_exists_for_other_method)."""
        route = self._static.get((method, path))
        if route is not None:
            return route, {}, False
        if method == "HEAD":
            route = self._static.get(("GET", path))
            if route is not None:
                return route, {}, False
        other = path in self._static_paths
        for r in self._dynamic.get(_first_segment(path), ()):
            m = r.pattern.match(path) if r.pattern is not None else None
            if m is None:
                continue
            if r.method == method or (method == "HEAD" and r.method == "GET"):
                return r, m.groupdict(), False
            other = True
        return None, {}, other

    def methods_for(self, path: str) -> list[str]:
        found = [m for (m, p) in self._static if p == path]
        found += [
            r.method
            for r in self._dynamic.get(_first_segment(path), ())
            if r.pattern and r.pattern.match(path)
        ]
        return sorted(set(found))

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)
