"""Web views of a worker: ``GET /metrics`` and ``GET /subscribers/{msisdn}``.

``/subscribers/{msisdn}`` is routed by Faust to the worker that owns the msisdn's partition of
the state table (``app.table_route``), so any worker can be asked about any subscriber.
"""

from __future__ import annotations

import logging
import re

from faust.web import Request, Response, View

from .metrics import CONTENT_TYPE_LATEST

__all__ = ["register_views"]

logger = logging.getLogger(__name__)

# aiohttp wants the charset apart from the content type
_METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"
_MSISDN = re.compile(r"[0-9]{5,20}")  # fullmatch: no trailing newline (``$`` would allow one)


def _retry_later(view: View) -> Response:
    return view.json(
        {"error": "partitions are being recovered, retry shortly"}, status=503, headers={"Retry-After": "5"}
    )


def register_views(service) -> None:
    """Register the views on ``service.app`` (a :class:`stream.service.churn.ChurnService`; not
    imported here: it imports this module)."""
    app = service.app

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            service.refresh_consumer_lag()
            return self.bytes(service.metrics.exposition(), content_type=_METRICS_CONTENT_TYPE)

    @app.page("/subscribers/{msisdn}")
    class SubscriberView(View):
        async def get(self, request: Request, msisdn: str) -> Response:
            if not _MSISDN.fullmatch(msisdn):
                return self.json({"error": "msisdn must be 5-20 digits"}, status=400)
            if service.recovering():  # partitions move or are being restored: a 404 now would be false
                return _retry_later(self)
            try:
                return await self.owner(request, msisdn=msisdn)
            except Exception as exc:  # noqa: BLE001 - Faust's router without an owner to ask (no metadata or
                # assignment yet, the owner gone mid-rebalance: aiokafka's _partition raised TypeError): transient
                logger.info("lookup routed nowhere (%s): 503", type(exc).__name__)
                return _retry_later(self)

        @app.table_route(table=service.table, match_info="msisdn")
        async def owner(self, request: Request, msisdn: str) -> Response:
            """On the worker that owns the msisdn's partition (Faust forwards the request there,
            where ``get`` has checked for a recovery already)."""
            view = service.engine.view(msisdn)
            if view is None:
                return self.json({"error": "unknown subscriber"}, status=404)
            return self.json(view)

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            health = service.health()
            return self.json(health, status=200 if health["status"] == "ok" else 503)
