"""Dynamic routes (SPEC §2): ``/api/register``, ``/api/unregister``, ``/api/list`` (admin) and
the proxy ``ANY /api/proxy/<name>[/<rest>]``. The machinery is in :mod:`pygw.proxy`."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from pygw._native import Claims
from pygw.api.models import MessageResponse, RouteInfo, RouteRegisterRequest, RouteRegisterResponse
from pygw.api.services import Services
from pygw.auth.bearer import bearer_token
from pygw.core.errors import NotFound, Unauthenticated
from pygw.http.errors import validation_error
from pygw.http.routing import Context, Router
from pygw.proxy.egress import PrivateAddress, check_base_url
from pygw.proxy.forward import forwarded_headers, response_headers, target_url
from pygw.store.base import RouteRecord
from pygw.transport.types import Response

TAGS = ("dynamic routes",)
PROXY_DOC = (
    "Forwards the request (method, `rest` of the path, query string, body, headers minus "
    "hop-by-hop ones, Host and, unless PYGW_PROXY_FORWARD_CREDENTIALS=true, Authorization, "
    "Cookie and X-API-Key) to the route's `base_url` + `path`, adding the route's headers "
    "and, for a caller with a valid bearer token, `X-User-ID` and `X-Session-ID`. The "
    "backend's status, body and headers come back unchanged. 400: a path with dot segments "
    "(in any encoding) or backslashes; 502: backend unreachable, or on a non-public address "
    "without PYGW_PROXY_ALLOW_PRIVATE=true; "
    "503: the route's circuit is open; 504: the backend did not answer within the route's "
    "timeout."
)


router = Router()


@router.post(
    "/api/register",
    auth="admin",
    body=RouteRegisterRequest,
    response_model=RouteRegisterResponse,
    summary="Register (or replace) a dynamic route, on every node",
    tags=TAGS,
    errors=(401, 403, 422, 503),
)
async def register_api(ctx: Context, svc: Services) -> dict[str, Any]:
    body: RouteRegisterRequest = ctx.body
    if not svc.settings.proxy_allow_private:
        try:
            await check_base_url(body.base_url)
        except PrivateAddress as exc:
            raise validation_error(
                [{"loc": ["body", "base_url"], "msg": str(exc), "type": "private_address"}]
            ) from None
    await svc.routes.put(
        RouteRecord(
            name=body.name,
            base_url=body.base_url,
            path=body.path,
            method=body.method,
            headers=dict(body.headers),
            timeout=body.timeout,
            require_auth=body.require_auth,
            ws_supported=body.ws_supported,
        )
    )
    return {"message": f"API '{body.name}' registered", "name": body.name}


@router.delete(
    "/api/unregister",
    auth="admin",
    response_model=MessageResponse,
    summary="Remove a dynamic route, on every node",
    tags=TAGS,
    errors=(401, 403, 404, 422, 503),
    query=(("name", "The route's name", True),),
)
async def unregister_api(ctx: Context, svc: Services) -> dict[str, str]:
    names = parse_qs(ctx.request.query_string).get("name")
    if not names or not names[0]:
        raise validation_error(
            [{"loc": ["query", "name"], "msg": "Field required", "type": "missing"}]
        )
    name = names[0]
    if not await svc.routes.delete(name):
        raise NotFound(f"API '{name}' not found")
    return {"message": f"API '{name}' removed"}


@router.get(
    "/api/list",
    auth="admin",
    response_model=list[RouteInfo],
    summary="Registered dynamic routes",
    tags=TAGS,
    errors=(401, 403, 503),
)
async def list_apis(ctx: Context, svc: Services) -> list[dict[str, Any]]:
    routes = await svc.storage.list_routes()
    return [
        {
            "name": r.name,
            "base_url": r.base_url,
            "method": r.method,
            "path": r.path,
            "ws_supported": r.ws_supported,
        }
        for r in routes
    ]


@router.get(
    "/admin/routes",
    auth="admin",
    summary="Dynamic routes with this node's circuit-breaker state (for the console)",
    tags=("admin",),
    errors=(401, 403, 503),
)
async def routes_with_breakers(ctx: Context, svc: Services) -> dict[str, Any]:
    routes = await svc.storage.list_routes()
    return {
        "gateway_id": svc.node.node_id,
        "routes": [
            {
                "name": r.name,
                "base_url": r.base_url,
                "method": r.method,
                "path": r.path,
                "timeout": r.timeout,
                "require_auth": r.require_auth,
                "ws_supported": r.ws_supported,
                "breaker": svc.routes.breaker_state(r.name),
            }
            for r in routes
        ],
    }


options: dict[str, Any] = {
    "all_headers": True,
    "tags": TAGS,
    "description": PROXY_DOC,
    "errors": (400, 401, 404, 502, 503, 504),
}


def identify(ctx: Context, svc: Services, route: RouteRecord) -> Claims | None:
    """The caller's verified claims. A route with ``require_auth`` answers 401 (with the usual
    messages) without a valid token; others just forward anonymous callers."""
    header = ctx.request.headers.get("authorization")
    if route.require_auth:
        return svc.auth.verify_access(bearer_token(header))
    if not header:
        return None
    try:
        return svc.auth.verify_access(bearer_token(header))
    except Unauthenticated:
        return None


async def forward(ctx: Context, svc: Services) -> Response:
    request = ctx.request
    name = ctx.params["name"]
    route = svc.routes.get(name)
    if route is None:
        raise NotFound(f"API '{name}' not found")
    claims = identify(ctx, svc, route)
    url = target_url(route, ctx.params.get("rest", ""), request.query_string)
    headers = forwarded_headers(
        request.headers,
        request.client_ip,
        route,
        None if claims is None else claims.user_id,
        None if claims is None else claims.sid,
        svc.settings.proxy_forward_credentials,
    )
    response, body = await svc.proxy.call(route, request.method, url, headers, request.body)
    content_type = response.headers.get("content-type")
    if content_type is None:
        content_type = "application/octet-stream" if body else ""
    return Response(
        response.status_code,
        body,
        content_type=content_type.encode("latin-1"),
        headers=response_headers(response) or None,
    )


async def proxy_root(ctx: Context, svc: Services) -> Response:
    return await forward(ctx, svc)


async def proxy_path(ctx: Context, svc: Services) -> Response:
    return await forward(ctx, svc)


for method in ("ANY", "OPTIONS"):
    router.route(method, "/api/proxy/{name}", summary="Proxy to a dynamic route", **options)(
        proxy_root
    )
    router.route(
        method,
        "/api/proxy/{name}/{rest:path}",
        summary="Proxy to a dynamic route (with a sub-path)",
        **options,
    )(proxy_path)
