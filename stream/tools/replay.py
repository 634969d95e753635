"""``churnwatch replay --events FILE.ndjson [--rate R]``: produce a file of events to the input topics.

For an operator's history (a month of CDRs exported as NDJSON, one event per line, arrival order)
loaded into a deployment: the worker meets it as a backlog, as it meets the topics' history when
first deployed or after an outage, and its alarms can be compared with ``churnwatch backtest`` on
the same file (``churnwatch alarms`` collects them). Each line goes, unchanged, to the topic of its
``type`` (calls, SMS, recharges, profiles: ``CHURNWATCH_TOPIC_*``) keyed by its ``msisdn``, in the
file's order; a line that is not such an event goes to the calls topic with the key of the line
before it, so that the worker dead-letters it with its reason, as it would a producer's. Missing
topics are created with ``CHURNWATCH_PARTITIONS`` partitions. Same producer as ``churnwatch
simulate --kafka`` (acks from all replicas; ``--rate`` events/s, 0 = as fast as the broker takes them).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["add_arguments", "run", "lines"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", required=True, help="NDJSON file of events, arrival order ('-' = stdin)")
    p.add_argument("--rate", type=float, default=0.0, help="events per second (default 0: as fast as possible)")


def lines(f: BinaryIO) -> Iterator[bytes]:
    """The file's non-blank lines, without their line ends."""
    for line in f:
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


def run(args: argparse.Namespace) -> int:
    from ..settings import Settings, SettingsError
    from .simulate import produce_to_kafka

    if args.rate < 0:
        print("replay: --rate must be >= 0", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    f = sys.stdin.buffer if args.events == "-" else open(args.events, "rb")  # noqa: SIM115 - closed below
    try:
        n = asyncio.run(produce_to_kafka(lines(f), settings, rate=args.rate, progress=True))
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    print(f"replay: {n:,} events sent to {', '.join(settings.input_topics)} at {settings.bootstrap_servers}")
    return 0
