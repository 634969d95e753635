"""A real, local Apache Kafka 3.9.1 broker without a Docker engine.

Kafka is assembled from Maven Central (``deploy/kafka/pom.xml``: ``org.apache.kafka:kafka_2.13``
plus the ``slf4j-reload4j`` logging binding, collected with ``mvn dependency:copy-dependencies``),
KRaft storage is formatted with ``kafka.tools.StorageTool format -t <cluster-id>`` against a
static ``controller.quorum.voters``, and a single combined broker+controller runs on 127.0.0.1
on a non-default port.

Everything is idempotent: jars are cached under ``.cache/kafka`` and data lives under
``var/kafka-<port>``; both folders are git-ignored. ``start`` reuses a broker that already
answers on the port. If ``KAFKA_BOOTSTRAP_SERVERS`` is set, nothing is started and that broker
is used.

CLI::

    python -m stream.dev.kafka fetch            # download the jars (once)
    python -m stream.dev.kafka start [--port N]  # start (or reuse) and wait until it answers
    python -m stream.dev.kafka status
    python -m stream.dev.kafka stop
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KAFKA_VERSION",
    "DEFAULT_PORT",
    "LocalKafka",
    "ensure_jars",
    "wait_for_broker",
    "broker_answers",
    "jars_present",
]

logger = logging.getLogger(__name__)

KAFKA_VERSION = "3.9.1"
DEFAULT_PORT = 19092  # not Kafka's default 9092, so it never collides with a real install
ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "deploy" / "kafka" / "pom.xml"
CACHE_DIR = Path(os.environ.get("CHURNWATCH_KAFKA_CACHE", ROOT / ".cache" / "kafka"))
VAR_DIR = Path(os.environ.get("CHURNWATCH_KAFKA_VAR", ROOT / "var"))
# A fixed cluster id (22 chars of url-safe base64, as `kafka-storage random-uuid` prints).
CLUSTER_ID = "Y2h1cm53YXRjaC1kZXYtMQ"

_LOG4J = """\
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.Kafka$=INFO
"""


def _required_jars(libs: Path) -> list[Path]:
    return [libs / f"kafka_2.13-{KAFKA_VERSION}.jar", libs / "slf4j-reload4j-1.7.36.jar"]


def jars_present(cache_dir: Path = CACHE_DIR) -> bool:
    """Whether Kafka's jars are already in the cache (no download needed)."""
    return all(p.exists() for p in _required_jars(cache_dir / "libs"))


def ensure_jars(cache_dir: Path = CACHE_DIR) -> Path:
    """Collect Kafka's jars from Maven Central into ``cache_dir/libs`` (once) and return it."""
    libs = cache_dir / "libs"
    if all(p.exists() for p in _required_jars(libs)):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(
            "Maven (mvn) is needed to assemble Kafka from Maven Central; install it or set KAFKA_BOOTSTRAP_SERVERS"
        )
    tmp = cache_dir / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    logger.info("assembling Kafka %s from Maven Central into %s", KAFKA_VERSION, libs)
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"mvn failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)  # atomic: a half-finished download never looks complete
    missing = [p.name for p in _required_jars(libs) if not p.exists()]
    if missing:
        raise RuntimeError(f"Kafka jars missing after mvn: {missing}")
    return libs


def broker_answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when the broker answers a metadata request with at least one live broker."""
    from ..service.topics import probe_brokers  # aiokafka is loaded only when a broker is probed

    try:
        return probe_brokers({"bootstrap_servers": bootstrap}, timeout_s) > 0
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False


def wait_for_broker(
    bootstrap: str, timeout_s: float = 90.0, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"Kafka exited with code {proc.returncode} before answering.\n{tail}")
        if broker_answers(bootstrap, timeout_s=2.0):
            return
        time.sleep(0.5)
    raise TimeoutError(f"Kafka at {bootstrap} did not answer a metadata request within {timeout_s:.0f}s")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists"; treat it as dead
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


@dataclass
class LocalKafka:
    """One single-node KRaft broker+controller on 127.0.0.1:``port`` (controller on port+1)."""

    port: int = DEFAULT_PORT
    cache_dir: Path = CACHE_DIR
    var_dir: Path = VAR_DIR
    heap: str = "768m"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def home(self) -> Path:
        return self.var_dir / f"kafka-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "kafka.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        cport = self.port + 1
        props = self.home / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{cport}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{cport}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.home / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",  # like production clusters: topics are created on purpose, never by a stray metadata request
                    "delete.topic.enable=true",
                    "log.retention.hours=168",
                    "log.segment.bytes=268435456",
                    "message.max.bytes=4194304",
                    "",
                ]
            )
        )
        (self.home / "log4j.properties").write_text(_LOG4J.format(log=self.log_file))
        return props

    def _java(self, libs: Path, main: str, *args: str, heap: str | None = None) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Java (17+) is needed to run the local Kafka broker, or set KAFKA_BOOTSTRAP_SERVERS")
        cmd = [java]
        if heap:
            cmd += [f"-Xmx{heap}", f"-Xms{min(256, int(heap.rstrip('m')))}m"]
        cmd += [
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]
        return cmd

    def _format(self, libs: Path, props: Path) -> None:
        if (self.home / "data" / "meta.properties").exists():
            return
        cmd = self._java(
            libs, "kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c", str(props), "--ignore-formatted"
        )
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"kafka StorageTool format failed:\n{proc.stdout}\n{proc.stderr}")

    def start(self, timeout_s: float = 90.0) -> str:
        """Start the broker (or reuse a running one) and return its bootstrap address."""
        pid = self.pid()
        if pid is not None and broker_answers(self.bootstrap):
            logger.info("reusing Kafka (pid %s) at %s", pid, self.bootstrap)
            return self.bootstrap
        if pid is not None:  # a stale or wedged broker of ours: replace it
            self.stop()
        libs = ensure_jars(self.cache_dir)
        props = self._write_config()
        self._format(libs, props)
        out = open(self.home / "kafka.out", "ab")
        proc = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(props), heap=self.heap),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop the broker ourselves
        )
        self.pid_file.write_text(str(proc.pid))
        try:
            wait_for_broker(self.bootstrap, timeout_s, proc=proc, log=self.home / "kafka.out")
        except BaseException:
            self.stop()
            raise
        logger.info("Kafka %s up at %s (pid %s)", KAFKA_VERSION, self.bootstrap, proc.pid)
        return self.bootstrap

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop cleanly (SIGTERM → controlled shutdown), SIGKILL only if it hangs."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _pid_alive(pid):
            try:  # reap if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        if _pid_alive(pid):
            logger.warning("Kafka pid %s ignored SIGTERM for %.0fs; killing", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def reset(self) -> None:
        """Stop and delete this broker's data (not the jar cache)."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def bootstrap_from_env() -> str | None:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="churnwatch devkafka", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["fetch", "start", "stop", "status", "reset"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("CHURNWATCH_DEVKAFKA_PORT", DEFAULT_PORT)))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    env = bootstrap_from_env()
    if env and args.action in ("start", "status"):
        ok = broker_answers(env)
        print(
            f"KAFKA_BOOTSTRAP_SERVERS={env} is set: using it, starting nothing ({'answers' if ok else 'NOT answering'})"
        )
        return 0 if ok else 1
    kafka = LocalKafka(port=args.port)
    if args.action == "fetch":
        print(ensure_jars(kafka.cache_dir))
    elif args.action == "start":
        print(kafka.start())
    elif args.action == "stop":
        kafka.stop()
    elif args.action == "reset":
        kafka.reset()
    elif args.action == "status":
        up = kafka.pid() is not None and broker_answers(kafka.bootstrap)
        print(f"{kafka.bootstrap}: {'up' if up else 'down'}")
        return 0 if up else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
