"""``/metrics`` in the Prometheus text format (the registry is built by the gateway). With
``PYGW_METRICS_PORT`` the page is served on that port instead (not on the API port)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pygw.api.services import Services
from pygw.core.errors import NotFound
from pygw.http.routing import Context, Router
from pygw.transport.types import Response

router = Router()


@router.get("/metrics", summary="Prometheus metrics", tags=("operations",))
async def metrics(ctx: Context, svc: Services) -> Response:
    if svc.settings.metrics_port:
        raise NotFound(f"Metrics are served on port {svc.settings.metrics_port}")
    return Response(200, generate_latest(svc.metrics_registry), CONTENT_TYPE_LATEST.encode())
