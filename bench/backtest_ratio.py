"""``churnwatch backtest`` as a whole process against ``orjson.loads`` of the same lines (issue 12):
``python -m bench.backtest_ratio [--subscribers N --days D --seed S --rounds R --events FILE]``.

Input: a simulated operator (``churnwatch simulate``: arrival order with up to 30 h of lateness,
0.05% malformed lines, optional fields present or absent, field order as the simulator writes
it), or ``--events FILE``. Timed in one process, the rounds interleaved (orjson, backtest,
orjson, ...), median of the rounds, wall time:

* **orjson**: read the file and ``orjson.loads`` every line (a malformed line caught and counted);
* **backtest**: ``stream.tools.backtest.backtest`` on the file: read, decode, engine, second-SIM
  join, day decisions, alarms written.

Prints lines/s of each and the ratio backtest / orjson (issue 12 asks >= 0.3, goal 0.5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import orjson


def orjson_pass(path: str) -> int:
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                pass
            n += 1
    return n


def backtest_pass(path: str, out: str) -> dict:
    from stream.tools.backtest import backtest

    return backtest(path, out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.backtest_ratio")
    p.add_argument("--subscribers", type=int, default=2000)
    p.add_argument("--days", type=int, default=45)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--events", help="an NDJSON file instead of a simulated one")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = a.events
        if not path:
            from stream.tools.simulate import generate

            path = os.path.join(tmp, "events.ndjson")
            events, _ = generate(a.subscribers, a.days, a.seed, fmt="bytes")
            with open(path, "wb") as fh:
                for line in events:
                    fh.write(line + b"\n")
        out = os.path.join(tmp, "alarms.ndjson")
        tj, tb = [], []
        n = summary = None
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            n = orjson_pass(path)
            t1 = time.perf_counter()
            summary = backtest_pass(path, out)
            t2 = time.perf_counter()
            tj.append(t1 - t0)
            tb.append(t2 - t1)
        mj, mb = statistics.median(tj), statistics.median(tb)
        src = a.events or f"simulated: {a.subscribers} subscribers x {a.days} days, seed {a.seed}"
        print(f"input: {n:,} lines ({src}); {sum(summary['rejected'].values()):,} rejected by the backtest")
        print(f"orjson.loads per line:  {n / mj:>12,.0f} lines/s  (median of {a.rounds}: {mj:.2f} s)")
        print(f"churnwatch backtest:    {n / mb:>12,.0f} lines/s  (median of {a.rounds}: {mb:.2f} s)")
        print(f"backtest / orjson: {mj / mb:.3f}  (issue 12: >= 0.3, goal 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
