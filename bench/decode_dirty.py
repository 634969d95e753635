"""decode on clean vs dirty input (issue 12): ``python -m bench.decode_dirty [--events N --rounds R --batch B]``.

Input, all from the same payloads:

* **clean**: ``bench.events.make_events`` lines (calls/SMS/recharges, fixed field order, every field
  present), keyed by their msisdn as the service decodes them (``keys=``);
* **dirty**: the same lines re-serialised with the field order shuffled per line, the optional
  fields (``imei``, ``cell_id``, ``channel``) each absent with probability 0.3, 3% of them late
  (ts 3 days back: out of order but within the subscriber's ring, so decode and the engine accept
  them), and 0.1% of the lines
  replaced by a malformed line, round robin over every reason decode produces
  (``REJECT_REASONS`` minus ``late``/``future``, which apply produces): invalid_json, not_object,
  unknown_type, missing_field, invalid_field, key_mismatch (the key, not the line, is altered).

Measured in one run, per CPU second of this process, median of the rounds, the timed runs of each
row interleaved round by round: ``decode`` (``stream.engine.decode.decode``) in batches of
``--batch`` lines, with keys (the service) and without (``churnwatch backtest``; key_mismatch lines
are then valid), on clean and dirty; and the ceilings, ``orjson.loads`` per line and of the joined
batch (``b"[" + b",".join(batch) + b"]"``, the decode's own trick; on dirty input it fails, so
it runs on the dirty lines minus the malformed ones: shuffled field order alone makes orjson slower). The cyclic GC is off in every timed region (decode turns it off itself).
``--baseline REV`` adds the decode of git revision ``REV`` (its ``stream/engine`` package, loaded
beside the current one) as rows of the same run: before and after on the same payloads.
Correctness, checked after the timed rounds: clean gives no rejects, dirty gives exactly the
injected (index, reason) pairs, and the valid lines of dirty decode to the same columns as the
same lines decoded one at a time.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time

import orjson

from stream.engine import EngineConfig
from stream.engine.decode import REJECT_REASONS, decode

from .events import T0, key_of, make_events

DAY = 86400
DECODE_REASONS = tuple(r for r in REJECT_REASONS if r not in ("late", "future"))
OPTIONAL = ("imei", "cell_id", "channel")


def _malformed(reason: str, obj: dict, line: bytes, rng: random.Random) -> bytes:
    """A line that decode rejects with ``reason`` (key_mismatch: the line itself stays valid)."""
    if reason == "invalid_json":
        return rng.choice([line[: len(line) // 2], line + b"}", line.replace(b":", b"=", 1), b""])
    if reason == "not_object":
        return rng.choice([b"[" + line + b"]", b"42", b'"call"', b"null"])
    o = dict(obj)
    if reason == "unknown_type":
        o["type"] = rng.choice(["fax", "mms", "CALL", 7])
    elif reason == "missing_field":
        req = {
            "call": ("type", "msisdn", "ts", "direction", "peer", "duration_s"),
            "sms": ("type", "msisdn", "ts", "direction", "peer"),
            "recharge": ("type", "msisdn", "ts", "amount"),
        }[o["type"]]
        o.pop(rng.choice(req))
    elif reason == "invalid_field":
        bad = [("msisdn", "86138abc"), ("msisdn", int(o["msisdn"])), ("ts", str(o["ts"])), ("ts", -5), ("ts", True)]
        if o["type"] in ("call", "sms"):
            bad += [("direction", "sideways"), ("peer", "+" + o["peer"]), ("peer", "")]
        if o["type"] == "call":
            bad += [("duration_s", -1), ("duration_s", 12.5), ("imei", "12345")]
        if o["type"] == "recharge":
            bad += [("amount", 0), ("amount", "50")]
        f, v = rng.choice(bad)
        o[f] = v
    return orjson.dumps(o)


def make_payloads(n: int, seed: int = 7, rate: float = 0.001, late: float = 0.03):
    """(clean lines, clean keys, dirty lines, dirty keys, {index: reason} of the malformed dirty lines)."""
    clean = make_events(n_subs=100_000, n_events=n, seed=seed, t_start=T0, span_s=0.5 * DAY)
    keys = [key_of(x) for x in clean]
    dirty, dkeys, expect = dirty_variant(clean, keys, seed, rate, late)
    return clean, keys, dirty, dkeys, expect


def dirty_variant(clean: list[bytes], keys: list[bytes], seed: int, rate: float = 0.001, late: float = 0.03):
    """The dirty variant of ``clean`` (see the module docstring): (dirty lines, dirty keys,
    {index: reason} of the malformed lines)."""
    rng = random.Random(seed)
    dirty, dkeys, expect = [], list(keys), {}
    n_bad = 0
    for i, line in enumerate(clean):
        o = orjson.loads(line)
        for f in OPTIONAL:
            if f in o and rng.random() < 0.3:
                del o[f]
        if rng.random() < late:
            o["ts"] -= 3 * DAY
        items = list(o.items())
        rng.shuffle(items)
        o = dict(items)
        out = orjson.dumps(o)
        if rng.random() < rate:
            reason = DECODE_REASONS[n_bad % len(DECODE_REASONS)]
            n_bad += 1
            if reason == "key_mismatch":
                dkeys[i] = rng.choice([b"", b"8613899999999", keys[i][:-1]])
            else:
                out = _malformed(reason, o, out, rng)
            expect[i] = reason
        dirty.append(out)
    return dirty, dkeys, expect


def _cpu(fn) -> float:
    gc.disable()
    try:
        c0 = time.process_time()
        fn()
        return time.process_time() - c0
    finally:
        gc.enable()


def _load_baseline(rev: str):
    """``decode`` of ``stream/engine`` as of git revision ``rev``: that revision's whole engine
    package (its decode may span modules), extracted into a temporary directory and imported as
    ``stream._baseline_engine`` beside the current one."""
    import importlib.util
    import io
    import os
    import subprocess
    import tarfile
    import tempfile

    tar = subprocess.run(
        ["git", "archive", rev, "stream/engine"],
        check=True,
        capture_output=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    ).stdout
    tmp = tempfile.mkdtemp(prefix="decode-baseline-")
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(tmp, filter="data")
    pkg_dir = os.path.join(tmp, "stream", "engine")
    name = "stream._baseline_engine"
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(pkg_dir, "__init__.py"), submodule_search_locations=[pkg_dir]
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return importlib.import_module(name + ".decode").decode


def _decode_all(lines, keys, batch, cfg, decode=decode):
    rej = []
    out = []
    for i in range(0, len(lines), batch):
        b, r = decode(lines[i : i + batch], None if keys is None else keys[i : i + batch], config=cfg, seq_start=i)
        rej += [(x.index + i, x.reason) for x in r]
        out.append(b)
    return out, rej


def _per_line(lines):
    loads = orjson.loads
    for x in lines:
        try:
            loads(x)
        except orjson.JSONDecodeError:
            pass


def _joined(lines, batch):
    loads = orjson.loads
    for i in range(0, len(lines), batch):
        loads(b"[" + b",".join(lines[i : i + batch]) + b"]")


def _check(clean, keys, dirty, dkeys, expect, batch, cfg) -> None:
    _, rej = _decode_all(clean, keys, batch, cfg)
    assert rej == [], rej[:5]
    _, rej = _decode_all(dirty, dkeys, batch, cfg)
    assert dict(rej) == expect and len(rej) == len(expect), (sorted(set(rej) ^ set(expect.items())))[:10]
    assert {r for _, r in rej} == set(DECODE_REASONS), {r for _, r in rej}
    # the valid lines of a dirty batch decode as they do one at a time (first batch, all columns)
    b, _ = decode(dirty[:batch], dkeys[:batch], config=cfg)
    singles = [
        decode([x], [k], config=cfg, seq_start=j)
        for j, (x, k) in enumerate(zip(dirty[:batch], dkeys[:batch], strict=False))
    ]
    for name in b.__dataclass_fields__:
        got = getattr(b, name)
        want = [v for s, _ in singles for v in (getattr(s, name) if name != "idx" else s.idx + s.off)]
        assert list(got) == list(want), name


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.decode_dirty")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=5000, help="lines per decode call (backtest default 5000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--baseline", metavar="REV", help="also time the decode.py of this git revision (before/after)")
    args = p.parse_args(argv)
    n, batch = args.events, args.batch
    t = time.perf_counter()
    clean, keys, dirty, dkeys, expect = make_payloads(n, seed=args.seed)
    cfg = EngineConfig()
    print(
        f"payloads: {n:,} lines, {sum(map(len, clean)) / n:.0f} B clean / {sum(map(len, dirty)) / n:.0f} B dirty; "
        f"{len(expect)} malformed in dirty ({', '.join(f'{r} {list(expect.values()).count(r)}' for r in DECODE_REASONS)}); "
        f"batch {batch:,}; built in {time.perf_counter() - t:.1f} s",
        file=sys.stderr,
    )
    valid = [x for i, x in enumerate(dirty) if i not in expect]  # the dirty lines minus the malformed
    gc.collect()
    gc.freeze()
    rows = {
        "decode clean, keys": lambda: _decode_all(clean, keys, batch, cfg),
        "decode dirty, keys": lambda: _decode_all(dirty, dkeys, batch, cfg),
        "decode clean, no keys": lambda: _decode_all(clean, None, batch, cfg),
        "decode dirty, no keys": lambda: _decode_all(dirty, None, batch, cfg),
    }
    if args.baseline:
        old = _load_baseline(args.baseline)
        rows.update(
            {
                f"{args.baseline} decode clean, keys": lambda: _decode_all(clean, keys, batch, cfg, old),
                f"{args.baseline} decode dirty, keys": lambda: _decode_all(dirty, dkeys, batch, cfg, old),
                f"{args.baseline} decode clean, no keys": lambda: _decode_all(clean, None, batch, cfg, old),
                f"{args.baseline} decode dirty, no keys": lambda: _decode_all(dirty, None, batch, cfg, old),
            }
        )
    rows |= {
        "orjson.loads per line, clean": lambda: _per_line(clean),
        "orjson.loads per line, dirty": lambda: _per_line(dirty),
        "orjson.loads joined batch, clean": lambda: _joined(clean, batch),
        "orjson.loads joined batch, dirty valid": lambda: _joined(valid, batch),
    }
    for fn in rows.values():  # warm-up (caches, allocator)
        fn()
    times: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.rounds):
        for k, fn in rows.items():
            times[k].append(_cpu(fn))
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    _check(clean, keys, dirty, dkeys, expect, batch, cfg)
    ceiling = max(rate["orjson.loads per line, clean"], rate["orjson.loads joined batch, clean"])
    print(f"{'':42s} {'lines/s (cpu)':>14s} {'/ ceiling':>10s}")
    for k, v in rate.items():
        print(f"{k:42s} {v:14,.0f} {v / ceiling:10.3f}")
    print(f"dirty / clean, keys:    {rate['decode dirty, keys'] / rate['decode clean, keys']:.3f}")
    print(f"dirty / clean, no keys: {rate['decode dirty, no keys'] / rate['decode clean, no keys']:.3f}")
    if args.baseline:
        b = args.baseline
        print(
            f"{b}: dirty / clean, keys: {rate[f'{b} decode dirty, keys'] / rate[f'{b} decode clean, keys']:.3f}, "
            f"no keys: {rate[f'{b} decode dirty, no keys'] / rate[f'{b} decode clean, no keys']:.3f}"
        )
        for k in ("clean, keys", "dirty, keys", "clean, no keys", "dirty, no keys"):
            print(f"now / {b}, {k}: {rate[f'decode {k}'] / rate[f'{b} decode {k}']:.3f}")
    print("checks: clean no rejects; dirty rejects == injected (index, reason); first dirty batch == lines one by one")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
