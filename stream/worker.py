"""``churnwatch worker``: run one streaming worker against ``KAFKA_BOOTSTRAP_SERVERS``.

Fails fast, with a clear message and exit code 2, on an unknown or malformed setting, a bad
threshold file (CHURNWATCH_CONFIG) or an unreachable broker. Add workers (same CHURNWATCH_APP_ID)
to scale out: Kafka's consumer group shares the partitions among them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .settings import Settings, SettingsError

__all__ = ["add_arguments", "run", "check_broker"]

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with engine thresholds (overrides CHURNWATCH_CONFIG)")
    p.add_argument("--broker-timeout", type=float, default=15.0, help="seconds to wait for the broker at start-up")


def check_broker(settings: Settings, timeout_s: float = 15.0) -> None:
    """Raise SettingsError unless the broker answers a metadata request within ``timeout_s``."""
    from .devkafka import probe_brokers

    try:
        n = probe_brokers(settings.kafka_client_kwargs(), timeout_s)
    except Exception as exc:  # noqa: BLE001
        raise SettingsError(f"Kafka broker {settings.bootstrap_servers} is unreachable: {type(exc).__name__}: {exc}") from None
    if n < 1:
        raise SettingsError(f"Kafka broker {settings.bootstrap_servers} answered with no live brokers")


def run(args: argparse.Namespace) -> int:
    import os

    if args.config:
        os.environ["CHURNWATCH_CONFIG"] = args.config
    try:
        settings = Settings.from_env()
        from .engine import ConfigError, EngineConfig

        try:
            if settings.config_path:
                EngineConfig.from_toml(settings.config_path)
        except ConfigError as exc:
            raise SettingsError(f"bad threshold file {settings.config_path}: {exc}") from None
        check_broker(settings, args.broker_timeout)
        from .topics import ensure_topics

        ensure_topics(settings)
    except SettingsError as exc:
        print(f"churnwatch worker: configuration error: {exc}", file=sys.stderr)
        return 2
    import faust

    from .service import build_service

    service = build_service(settings)
    worker = faust.Worker(service.app, loglevel=settings.log_level.upper())
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits the process
    return 0
