"""``python -m bench.agreement --events FILE.ndjson [--config FILE.toml] [--workers N] [--busy] [--json OUT]``

The live worker against ``churnwatch backtest`` on one file, as a CRM team would check it: the
file is produced to the input topics of a fresh local broker as a backlog (``churnwatch replay``:
12 partitions, each line on its type's topic keyed by its msisdn, the file's order), then one
``churnwatch worker`` is started on it (``--workers N``: N in one consumer group; ``--busy``: with a
CPU-bound loop beside them) and left until the input lag is 0 and the decided days have not moved
for 20 s; the alarm records are read from the alarm topic (``churnwatch alarms``) and compared
with the backtest's on the same file and config.

Printed: records on each side, the (msisdn, phase, event-time day, alarm_id) keys found on one side
only, the Jaccard index of (msisdn, phase) pairs (the issue's measure), the subscribers that differ
grouped by the signals of their differing records (``dual_sim``: the second-SIM join's evidence,
which comes back through two Kafka hops; ``circle``: contact erosion or competitor contacts, the
contact-circle sketch's order; README "What still varies, named"), and the worker's dead letters
and late events.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .e2e import PY, ROOT, Broker, base_env, free_port

__all__ = ["compare", "main"]


def _metrics(port: int) -> dict[str, float]:
    """The worker's /metrics: each sample name's value summed over its labels ({} when it does
    not answer)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def _key(a: dict) -> tuple:
    return a["msisdn"], a["phase"], int(a["event_time"] // 86400), a["alarm_id"]


def compare(backtest: list[dict], live: list[dict]) -> dict:
    """What differs between two alarm record lists (see the module docstring)."""
    kb, kl = collections.Counter(map(_key, backtest)), collections.Counter(map(_key, live))
    only_b, only_l = kb - kl, kl - kb
    pb = {(a["msisdn"], a["phase"]) for a in backtest}
    pl = {(a["msisdn"], a["phase"]) for a in live}
    differing = sorted({k[0] for k in only_b} | {k[0] for k in only_l})
    by_signal: collections.Counter = collections.Counter()
    for s in differing:
        names = {
            g["name"]
            for a in backtest + live
            if a["msisdn"] == s and (_key(a) in only_b or _key(a) in only_l)
            for g in a.get("signals") or ()
        }
        if "dual_sim" in names:
            by_signal["dual_sim"] += 1
        elif names & {"contact_erosion", "competitor_contacts"}:
            by_signal["circle"] += 1
        else:
            by_signal["/".join(sorted(names)) or "recovered only"] += 1
    return {
        "backtest_records": len(backtest),
        "live_records": len(live),
        "same_keys": sum((kb & kl).values()),
        "only_backtest": sum(only_b.values()),
        "only_live": sum(only_l.values()),
        "live_duplicates": sum(v - 1 for v in kl.values() if v > 1),
        "jaccard_msisdn_phase": len(pb & pl) / max(1, len(pb | pl)),
        "subscribers_differing": len(differing),
        "subscribers_differing_by_signal": dict(by_signal),
    }


def _read_ndjson(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _run(cmd: list[str], env: dict, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, **kw)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:4])} failed:\n{out.stdout[-2000:]!r}\n{out.stderr[-2000:]!r}")
    return out


def _wait_done(workers: list[subprocess.Popen], ports: list[int], timeout_s: float) -> list[dict[str, float]]:
    """Poll the workers until the input lag of each is 0 and their decided days stayed for 20 s."""
    deadline = time.monotonic() + timeout_s
    last, since, ms = None, time.monotonic(), []
    while time.monotonic() < deadline and all(w.poll() is None for w in workers):
        time.sleep(2)
        ms = [_metrics(port) for port in ports]
        days = tuple(m.get("churnwatch_decided_day") for m in ms)
        lags = [m.get("churnwatch_consumer_lag") for m in ms]
        if None in days or any(lag != 0 for lag in lags) or days != last:
            last, since = days, time.monotonic()
        elif time.monotonic() - since >= 20:
            return ms
    codes = [w.poll() for w in workers]
    raise SystemExit(f"the workers did not finish in {timeout_s:.0f} s (exit codes {codes}); last metrics: {ms}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.agreement", description=__doc__.split("\n\n")[1])
    p.add_argument("--events", required=True, help="NDJSON file of events (arrival order)")
    p.add_argument("--config", help="engine config TOML for both (CHURNWATCH_CONFIG); defaults when absent")
    p.add_argument("--busy", action="store_true", help="a CPU-bound loop beside the worker")
    p.add_argument("--workers", type=int, default=1, help="workers in the consumer group (default 1)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds the worker may take (default 1800)")
    p.add_argument("--json", help="also write the result here")
    p.add_argument(
        "--keep", help="copy both alarm files (bt.ndjson, live.ndjson) and the worker logs to this directory"
    )
    args = p.parse_args(argv)
    events = str(Path(args.events).resolve())
    with tempfile.TemporaryDirectory(prefix="cw-agreement-") as tmp, Broker(port=free_port()) as broker:
        work = Path(tmp)
        env = {**base_env(), "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
        if args.config:
            env["CHURNWATCH_CONFIG"] = str(Path(args.config).resolve())
        t0 = time.monotonic()
        _run([PY, "-m", "stream.cli", "backtest", "--events", events, "--alarms-out", str(work / "bt.ndjson")], env)
        t1 = time.monotonic()
        _run([PY, "-m", "stream.cli", "replay", "--events", events], env)
        t2 = time.monotonic()
        ports = [free_port() for _ in range(args.workers)]
        busy = subprocess.Popen([PY, "-c", "while True: pass"]) if args.busy else None
        workers = []
        for i, port in enumerate(ports):
            wenv = {**env, "CHURNWATCH_DATA_DIR": str(work / f"worker{i}"), "CHURNWATCH_WEB_PORT": str(port)}
            with open(work / f"worker{i}.log", "wb") as log:
                workers.append(
                    subprocess.Popen(
                        [PY, "-m", "stream.cli", "worker"], cwd=ROOT, env=wenv, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        try:
            ms = _wait_done(workers, ports, args.timeout)
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                try:
                    w.wait(60)
                except subprocess.TimeoutExpired:
                    w.kill()
            if busy is not None:
                busy.kill()
            if args.keep:  # (the logs also when the workers failed)
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                for f in work.glob("worker*.log"):
                    shutil.copy(f, Path(args.keep) / f.name)
        t3 = time.monotonic()
        live = _run([PY, "-m", "stream.cli", "alarms", "--format", "ndjson"], env).stdout
        res = compare(_read_ndjson(work / "bt.ndjson"), [json.loads(x) for x in live.splitlines() if x.strip()])
        res.update(
            events=events,
            config=args.config,
            busy=args.busy,
            workers=args.workers,
            backtest_s=round(t1 - t0, 1),
            replay_s=round(t2 - t1, 1),
            worker_s=round(t3 - t2, 1),
            worker_events=sum(m.get("churnwatch_events_total", 0.0) for m in ms),
            worker_deadletters=sum(m.get("churnwatch_deadletters_total", 0.0) for m in ms),
            worker_late=sum(m.get("churnwatch_late_events_total", 0.0) for m in ms),
            worker_error_lines=sum(f.read_bytes().count(b" ERROR ") for f in work.glob("worker*.log")),
        )
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            (keep / "live.ndjson").write_bytes(live if isinstance(live, bytes) else live.encode())
            shutil.copy(work / "bt.ndjson", keep / "bt.ndjson")
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
