"""``churnwatch alarms [--follow]``: read the alarm topic.

By default it reads every partition of the alarm topic from the beginning and exits once it has
caught up with the end offsets it saw at start; ``--follow`` keeps tailing until Ctrl-C (exit 0);
``--max N`` stops after N records. Output is an aligned table on a terminal (msisdns masked,
event time in local time) and NDJSON when piped (each record exactly as it is on the topic: it is
already the contract, see ``schemas/alarm.schema.json``).

``--dedupe`` shows each ``alarm_id`` once: a worker that crashed replays its input from its last
checkpoint and sends the alarms of that replay again, with the same ids (at-least-once delivery);
the records skipped so are counted on stderr at the end.

It is a pure reader: no consumer group (``group_id=None``), partitions assigned by hand, no offset
commits, so running it never disturbs the worker or any other consumer. Records that are not a
JSON object are reported to stderr (position only, no content: personal data) and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

import orjson

from ..contract import mask_msisdn
from ..settings import Settings, SettingsError

__all__ = ["add_arguments", "run", "format_row", "format_header", "format_table", "parse_record", "COLUMNS"]

logger = logging.getLogger(__name__)

# (title, width) of the table columns; the last one (signals) is not padded. Widths are fixed so a
# followed stream stays aligned without knowing the rows to come.
COLUMNS: tuple[tuple[str, int], ...] = (
    ("TIME", 25),  # 2026-11-23T20:13:20+08:00
    ("MSISDN", 15),
    ("PHASE", 9),
    ("TIER", 4),
    ("SCORE", 5),
    ("REASON", 17),
    ("SIGNALS", 0),
)
_MISSING = "?"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", default=None, help="alarm topic (default: CHURNWATCH_TOPIC_ALARMS, churn.alarms)")
    p.add_argument("-f", "--follow", action="store_true", help="keep tailing after catching up, until Ctrl-C")
    p.add_argument("--max", type=int, default=None, metavar="N", help="stop after N records")
    p.add_argument(
        "--format",
        choices=("auto", "table", "ndjson"),
        default="auto",
        help="table (masked msisdns), ndjson (records unchanged) or auto: table on a terminal, ndjson when piped (default)",
    )
    p.add_argument("--from-end", action="store_true", help="skip what is already on the topic (use with --follow)")
    p.add_argument(
        "--dedupe",
        action="store_true",
        help="show each alarm_id once (a worker re-sends the alarms of its replay after a crash, same ids); "
        "the re-sent records skipped are counted on stderr",
    )


# ---------------------------------------------------------------------------------------------
# Pure formatting


def parse_record(value: bytes | None) -> dict:
    """Decode one alarm record value; ``ValueError`` if it is not a JSON object."""
    if value is None:
        raise ValueError("empty value (tombstone)")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object but {type(obj).__name__}")
    return obj


def _fmt_time(value: Any, tz: tzinfo | None) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _MISSING
    try:
        dt = datetime.fromtimestamp(value, tz=UTC).astimezone(tz)  # tz=None: local time
    except (OverflowError, OSError, ValueError):
        return _MISSING
    return dt.isoformat(timespec="seconds")


def _fmt_score(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _MISSING
    return f"{value:.2f}"


def _fmt_signals(value: Any) -> str:
    if not isinstance(value, list):
        return _MISSING
    names = []
    for s in value:
        if not isinstance(s, dict):
            names.append(_MISSING)
            continue
        name = str(s.get("name", _MISSING))
        detail = s.get("detail")
        if isinstance(detail, dict) and isinstance(detail.get("shadow_peer"), str):
            name += f"({detail['shadow_peer']})"  # the second SIM, already masked
        names.append(name)
    return ",".join(names) if names else "-"


def _text(value: Any) -> str:
    return _MISSING if value is None else str(value)


def format_header() -> str:
    return _join(title for title, _ in COLUMNS)


def format_row(record: Mapping[str, Any], tz: tzinfo | None = None) -> str:
    """One alarm as a table line: local event time, masked msisdn, phase, tier, score, reason,
    signal names. Missing or malformed fields show as ``?``; it never raises on a dict."""
    return _join(
        (
            _fmt_time(record.get("event_time"), tz),
            mask_msisdn(record["msisdn"]) if record.get("msisdn") is not None else _MISSING,
            _text(record.get("phase")),
            _text(record.get("value_tier")),
            _fmt_score(record.get("score")),
            _text(record.get("reason")),
            _fmt_signals(record.get("signals")),
        )
    )


def format_table(records: Iterable[Mapping[str, Any]], tz: tzinfo | None = None, header: bool = True) -> str:
    """The whole table as text (header line first unless ``header=False``), newline-terminated."""
    lines = [format_header()] if header else []
    lines.extend(format_row(r, tz) for r in records)
    return "".join(line + "\n" for line in lines)


def _join(cells: Iterable[str]) -> str:
    out = []
    for (_, width), cell in zip(COLUMNS, cells, strict=False):
        out.append(cell.ljust(width) if width else cell)
    return "  ".join(out).rstrip()


def _ndjson_line(value: bytes, record: dict) -> bytes:
    """The record unchanged; only a value spread over several lines is re-serialised compactly
    (same content), because NDJSON needs one record per line."""
    raw = value.strip()
    if b"\n" in raw or b"\r" in raw:
        raw = orjson.dumps(record)
    return raw + b"\n"


# ---------------------------------------------------------------------------------------------
# Reading the topic


class _Output:
    """Writes records to stdout in the chosen format. If the reader goes away (``| head``) it
    stops writing and calls ``on_gone`` instead of raising ``BrokenPipeError``."""

    def __init__(self, fmt: str, stream=None, on_gone: Callable[[], None] | None = None) -> None:
        self.stream = stream or sys.stdout
        if fmt == "auto":
            fmt = "table" if self.stream.isatty() else "ndjson"
        self.fmt = fmt
        self.on_gone = on_gone
        self.gone = False
        self._header_done = False

    def write(self, value: bytes, record: dict) -> None:
        if self.gone:
            return
        try:
            if self.fmt == "ndjson":
                self.stream.buffer.write(_ndjson_line(value, record))
            else:
                if not self._header_done:
                    self.stream.write(format_header() + "\n")
                    self._header_done = True
                self.stream.write(format_row(record) + "\n")
        except BrokenPipeError:
            self._gone()

    def empty(self, message: str) -> None:
        """Nothing to show: in a table, the header and ``message``; in NDJSON, ``message`` on
        stderr (stdout stays machine-readable)."""
        if self.gone:
            return
        if self.fmt == "ndjson":
            print(message, file=sys.stderr)
            return
        try:
            self.stream.write(format_header() + "\n" + message + "\n")
        except BrokenPipeError:
            self._gone()

    def flush(self) -> None:
        if self.gone:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        self.gone = True
        # keep the interpreter's final flush of stdout from failing again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())
        os.close(devnull)
        if self.on_gone is not None:
            self.on_gone()


class _Dedupe:
    """Passes a record on unless its ``alarm_id`` was passed on already (records without one
    always pass), remembering the last ``limit`` ids (a follow that runs for months stays bounded;
    a worker's re-sends come within seconds of the first). Returns whether it passed it on."""

    def __init__(self, emit: Callable[[bytes, dict], None], limit: int = 1_000_000) -> None:
        self.emit = emit
        self.limit = limit
        self.seen: dict[str, None] = {}
        self.skipped = 0

    def __call__(self, value: bytes, record: dict) -> bool:
        aid = record.get("alarm_id")
        if isinstance(aid, str):
            if aid in self.seen:
                self.skipped += 1
                return False
            self.seen[aid] = None
            if len(self.seen) > self.limit:
                del self.seen[next(iter(self.seen))]
        self.emit(value, record)
        return True


async def _wait_for_partitions(client_kwargs: dict, topic: str, follow: bool, stop: asyncio.Event) -> list | None:
    """The topic's partitions; None when it does not exist and we do not follow; [] when stopped."""
    from aiokafka import AIOKafkaClient, TopicPartition

    client = AIOKafkaClient(**client_kwargs)
    await client.bootstrap()
    try:
        while True:
            # a metadata request for all topics: does not auto-create the topic (a request naming
            # it would, on brokers with auto.create.topics.enable). This is what consumer.topics()
            # does, keeping the partition lists that topics() throws away.
            cluster = await client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(topic)
            if parts:
                return [TopicPartition(topic, p) for p in sorted(parts)]
            if not follow:
                return None
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
                return []
            except TimeoutError:
                continue
    finally:
        await client.close()


async def _read(
    settings: Settings,
    topic: str,
    *,
    follow: bool,
    max_records: int | None,
    from_end: bool,
    emit: Callable[[bytes, dict], bool | None],
    flush: Callable[[], None],
    stop: asyncio.Event,
    on_empty: Callable[[str], None] | None = None,
) -> int:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest" if from_end else "earliest",
        client_id="churnwatch-alarms",
        **settings.kafka_client_kwargs(),
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        print(f"churnwatch alarms: cannot reach Kafka at {settings.bootstrap_servers}: {exc}", file=sys.stderr)
        return 1
    count = 0
    try:
        tps = await _wait_for_partitions(settings.kafka_client_kwargs(), topic, follow, stop)
        if tps is None:
            print(f"churnwatch alarms: topic {topic!r} does not exist", file=sys.stderr)
            return 1
        if not tps:  # stopped while waiting for the topic
            return 0
        consumer.assign(tps)
        if from_end:
            await consumer.seek_to_end(*tps)
        else:
            await consumer.seek_to_beginning(*tps)
        # "caught up" = every partition's position has reached the end offset seen at start
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        while not stop.is_set():
            if not follow and not pending:
                break
            if max_records is not None and count >= max_records:
                break
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for tp, msgs in batches.items():
                for msg in msgs:
                    if max_records is not None and count >= max_records:
                        break
                    try:
                        record = parse_record(msg.value)
                    except ValueError as exc:
                        print(
                            f"churnwatch alarms: skipping unparseable record {tp.topic}[{tp.partition}]@{msg.offset}: {exc}",
                            file=sys.stderr,
                        )
                        continue
                    if emit(msg.value, record) is not False:  # (False: not shown, --dedupe)
                        count += 1
            flush()
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        if count == 0 and not follow and on_empty is not None and not stop.is_set():
            on_empty(
                f"no alarms yet (topic {topic}, {len(tps)} partitions, end offsets total {sum(end.values()):,}"
                + (", reading from the end" if from_end else "")
                + ")"
            )
        return 0
    finally:
        flush()
        await consumer.stop()


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"churnwatch alarms: {exc}", file=sys.stderr)
        return 2
    if args.max is not None and args.max < 0:
        print("churnwatch alarms: --max must be >= 0", file=sys.stderr)
        return 2
    topic = args.topic or settings.topic_alarms

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread / not Unix
                pass
        out = _Output(args.format, on_gone=stop.set)
        dedupe = _Dedupe(out.write) if args.dedupe else None
        try:
            return await _read(
                settings,
                topic,
                follow=args.follow,
                max_records=args.max,
                from_end=args.from_end,
                emit=dedupe or out.write,
                flush=out.flush,
                stop=stop,
                on_empty=out.empty,
            )
        finally:
            if dedupe is not None:
                print(
                    f"churnwatch alarms: {dedupe.skipped:,} re-sent record(s) skipped (an alarm_id shown before)",
                    file=sys.stderr,
                )

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        return 0
