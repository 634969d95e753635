"""``churnwatch devkafka fetch|start|stop|status|reset``: the local broker (see stream.dev.kafka)."""

from __future__ import annotations

import argparse

from . import kafka as devkafka

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fetch", "start", "stop", "status", "reset"])
    p.add_argument("--port", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    argv = [args.action] + ([] if args.port is None else ["--port", str(args.port)])
    return devkafka.main(argv)
