"""The Faust app for ``faust -A stream.app worker`` (settings from the environment).

``churnwatch worker`` builds the same service through :func:`stream.service.build_service`
after checking the settings and the broker first.
"""

from __future__ import annotations

from .service import build_service

__all__ = ["app", "service"]

service = build_service()
app = service.app
