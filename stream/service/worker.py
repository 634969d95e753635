"""``churnwatch worker``: run one streaming worker against ``KAFKA_BOOTSTRAP_SERVERS``.

Fails fast, with a clear message and exit code 2, on an unknown or malformed setting, a bad
threshold file (CHURNWATCH_CONFIG), a web port it cannot bind or an unreachable broker. Add workers (same CHURNWATCH_APP_ID)
to scale out: Kafka's consumer group shares the partitions among them.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from ..settings import Settings, SettingsError

__all__ = ["add_arguments", "run", "check_broker", "check_web_port"]

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with engine thresholds (overrides CHURNWATCH_CONFIG)")
    p.add_argument("--broker-timeout", type=float, default=15.0, help="seconds to wait for the broker at start-up")


def check_broker(settings: Settings, timeout_s: float = 15.0) -> None:
    """Raise SettingsError unless the broker answers a metadata request within ``timeout_s``."""
    from .topics import probe_brokers

    try:
        n = probe_brokers(settings.kafka_client_kwargs(), timeout_s)
    except Exception as exc:  # noqa: BLE001
        raise SettingsError(
            f"Kafka broker {settings.bootstrap_servers} is unreachable: {type(exc).__name__}: {exc}"
        ) from None
    if n < 1:
        raise SettingsError(f"Kafka broker {settings.bootstrap_servers} answered with no live brokers")


def check_decision_window(settings: Settings, cfg) -> None:
    """A day is decided when the slowest input is ``decision_grace_s`` into the next day, and the
    others may be ``CHURNWATCH_MAX_SKEW_S`` further: the ring must still hold every day the
    decision reads next to the newest day applied (ring_days - baseline_days - recent_days days)."""
    room = (cfg.ring_days - cfg.baseline_days - cfg.recent_days) * 86400
    if settings.max_skew_s + cfg.decision_grace_s >= room:
        raise SettingsError(
            f"CHURNWATCH_MAX_SKEW_S ({settings.max_skew_s:g}) + decision_grace_s ({cfg.decision_grace_s:g}) must be "
            f"< (ring_days - baseline_days - recent_days) days = {room} s: raise ring_days or lower one of them"
        )


def check_web_port(settings: Settings) -> None:
    """Raise SettingsError when the web server could not bind its address (port taken, no such
    local address), before anything else starts."""
    import socket

    host = settings.web_host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, settings.web_port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise SettingsError(f"CHURNWATCH_WEB_HOST={settings.web_host!r}: {exc.strerror or exc}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds (a TIME_WAIT port is fine)
        sock.bind(addr)
    except OSError as exc:
        raise SettingsError(
            f"cannot serve the web views on {settings.web_host}:{settings.web_port}: {exc.strerror or exc} "
            "(another worker or program on that port? set CHURNWATCH_WEB_PORT)"
        ) from None
    finally:
        sock.close()


def _exit_after_grace(signum: int, grace_s: float) -> None:
    """Exit hard if a graceful shutdown has not finished in ``grace_s`` (CHURNWATCH_SHUTDOWN_GRACE_S,
    25 s by default: below docker-compose's stop_grace_period and Kubernetes' default, 30 s): with the broker
    gone, Faust's shutdown waits on the consumer and the producer and would never end. Nothing is
    lost: what was not committed is replayed from the last commit at the next start."""
    import os
    import threading

    def _hard_exit() -> None:
        logger.warning("shutdown did not finish in %.0fs (broker unreachable?): exiting now", grace_s)
        logging.shutdown()
        os._exit(128 + signum)

    timer = threading.Timer(grace_s, _hard_exit)
    timer.daemon = True
    timer.start()


def _worker_class(grace_s: float):
    import signal

    import faust

    class Worker(faust.Worker):
        """Faust's worker, with a bound on how long SIGTERM / SIGINT may take to stop it."""

        def _on_sigterm(self) -> None:
            _exit_after_grace(signal.SIGTERM, grace_s)
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            _exit_after_grace(signal.SIGINT, grace_s)
            super()._on_sigint()

    return Worker


class RetriedErrorsAsWarnings(logging.Filter):
    """aiokafka logs ERROR for two conditions that it retries by itself and that a first start
    meets: no group coordinator yet (a fresh broker elects one), and an internal topic the
    metadata does not list yet (Faust creates the tables' changelogs as the worker starts). An SRE
    paged on ERROR lines would be paged at every start; they are logged as WARNING instead (a
    broker that stays away shows at ``/healthz``: ``broker_unreachable``). Non-retriable
    coordinator errors stay ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and isinstance(record.msg, str):
            retried = record.msg.startswith("Topic %s not found in cluster metadata") or (
                record.msg.startswith("Group Coordinator Request failed")
                and bool(record.args)
                and getattr(record.args[0], "retriable", False)
            )
            if retried:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_retried_errors() -> None:
    """Install :class:`RetriedErrorsAsWarnings` on the aiokafka loggers that log them."""
    for name in ("aiokafka.cluster", "aiokafka.consumer.group_coordinator"):
        log = logging.getLogger(name)
        if not any(isinstance(f, RetriedErrorsAsWarnings) for f in log.filters):
            log.addFilter(RetriedErrorsAsWarnings())


def worker_process(service) -> None:
    """What the worker's process sets up beside the service (``churnwatch worker`` and ``faust -A
    stream.service.app worker`` alike): young garbage collections less often than Python's 700
    allocations (``CHURNWATCH_GC_GEN0``), so that a batch's records and decoded objects die before
    one instead of being promoted and bringing full collections of the whole heap (README,
    "Configuration", for the measurement), and the GC's pauses counted in the service's metrics."""
    gc.set_threshold(service.settings.gc_gen0, 10, 10)
    service.metrics.time_gc()


def run(args: argparse.Namespace) -> int:
    import os

    if args.config:
        os.environ["CHURNWATCH_CONFIG"] = args.config
    try:
        settings = Settings.from_env()
        from ..engine import ConfigError, EngineConfig

        try:
            cfg = EngineConfig.from_toml(settings.config_path) if settings.config_path else EngineConfig()
        except ConfigError as exc:
            raise SettingsError(f"bad threshold file {settings.config_path}: {exc}") from None
        check_decision_window(settings, cfg)
        check_web_port(settings)
        check_broker(settings, args.broker_timeout)
        from .topics import ensure_topics

        ensure_topics(settings)
    except SettingsError as exc:
        print(f"churnwatch worker: configuration error: {exc}", file=sys.stderr)
        return 2

    from .churn import build_service

    quiet_retried_errors()
    service = build_service(settings)
    worker_process(service)
    worker = _worker_class(settings.shutdown_grace_s)(service.app, loglevel=settings.log_level.upper())
    if not sys.stdout.isatty():
        worker.spinner = None  # its terminal escape codes would litter a log file
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits the process
    return 0
