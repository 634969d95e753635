"""The Faust app for ``faust -A stream.service.app worker`` (settings from the environment).

``churnwatch worker`` builds the same service through :func:`stream.service.build_service`
after checking the settings and the broker first. Importing this module creates the service's
topics if they are missing (and checks the inputs are co-partitioned), as the worker does.
"""

from __future__ import annotations

from ..settings import Settings
from .churn import build_service
from .topics import ensure_topics
from .worker import worker_process

__all__ = ["app", "service"]

_settings = Settings.from_env()
ensure_topics(_settings)
service = build_service(_settings)
worker_process(service)
app = service.app
