"""Events as JSON lines in arrival order (late carry-over, malformed variants), ``generate``, and the truth CSV."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

from .days import _COLS, _lateness, _Rhythm, _simulate_day
from .plan import _CALL, _CHANNELS, _OP_NAMES, _OP_NONE, _PROFILE, DAY_S, DEFAULT_START, _plan, _World
from .profile import Profile, resolve_profile

TRUTH_FIELDS = (
    "msisdn",
    "archetype",
    "churn_day",
    "churn_ts",
    "stop_day",
    "plan",
    "arpu",
    "tenure",
    "second_sim",
    "notes",
)
TOPIC_KINDS = ("calls", "sms", "recharges", "profiles")


def _malformed_variant(rng: np.random.Generator, line: bytes) -> bytes:
    r = rng.integers(0, 5)
    if r == 0:  # truncated JSON
        return line[: max(1, len(line) // 2)]
    if r == 1:  # missing a required field
        return re.sub(rb'"ts":[0-9]+,', b"", line, count=1) if b'"ts":' in line else line[:-1] + b',"x":}'
    if r == 2:  # bad type: duration as a string / ts as a date string
        if b'"duration_s":' in line:
            return re.sub(rb'"duration_s":([0-9]+)', rb'"duration_s":"\1s"', line, count=1)
        return re.sub(rb'"ts":([0-9]+)', rb'"ts":"2026-01-05T08:00:00"', line, count=1)
    if r == 3:  # not UTF-8
        return line[:20] + b"\xff\xfe" + line[20:]
    return line.replace(b'"msisdn":"', b'"msisdn":', 1)  # broken quoting


def _encode(w: _World, cols: dict[str, np.ndarray], order: np.ndarray) -> list[tuple[int, bytes, bytes]]:
    """JSON lines for the rows ``order`` (digits and fixed vocabularies only: no escaping needed)."""
    nums = w.numbers
    imeis = w.imei_strs
    if w.keys is None:
        w.keys = [m.encode() for m in nums[: w.n]]
    keys = w.keys
    kind_l = cols["kind"][order].tolist()
    sub_l = cols["sub"][order].tolist()
    dir_l = cols["dir"][order].tolist()
    peer_l = cols["peer"][order].tolist()
    op_l = cols["op"][order].tolist()
    ts_l = cols["ts"][order].tolist()
    dur_l = cols["dur"][order].tolist()
    imei_l = cols["imei"][order].tolist()
    cell_l = cols["cell"][order].tolist()
    amt_l = cols["amount"][order].tolist()
    chan_l = cols["chan"][order].tolist()
    dirs = ("out", "in")
    opf_of = {o: f',"peer_operator":"{_OP_NAMES[o]}"' for o in range(len(_OP_NAMES))}
    opf_of[_OP_NONE] = ""
    lines = []
    append = lines.append
    for j in range(len(kind_l)):
        k = kind_l[j]
        if k == 0:
            im = imei_l[j]
            append(
                f'{{"type":"call","msisdn":"{nums[sub_l[j]]}","ts":{ts_l[j]},"direction":"{dirs[dir_l[j]]}","peer":"{nums[peer_l[j]]}",'
                f'"duration_s":{dur_l[j]}{opf_of[op_l[j]]}'
                + (f',"imei":"{imeis[im]}"' if im >= 0 else "")
                + f',"cell_id":"46000-{cell_l[j]}"}}'
            )
        elif k == 1:
            append(
                f'{{"type":"sms","msisdn":"{nums[sub_l[j]]}","ts":{ts_l[j]},"direction":"{dirs[dir_l[j]]}","peer":"{nums[peer_l[j]]}"{opf_of[op_l[j]]}}}'
            )
        else:  # recharge
            append(
                f'{{"type":"recharge","msisdn":"{nums[sub_l[j]]}","ts":{ts_l[j]},"amount":{amt_l[j]},"channel":"{_CHANNELS[chan_l[j]]}"}}'
            )
    if not lines:
        return []
    vals = "\n".join(lines).encode().split(b"\n")  # one encode for the whole day
    return list(zip(kind_l, [keys[i] for i in sub_l], vals, strict=False))


def _iter_records(w: _World, seed: int, malformed_rate: float, late: bool) -> Iterator[tuple[int, bytes, bytes, bool]]:
    """(kind, key, value, malformed) in arrival order."""
    rng = np.random.default_rng([seed, 1])
    mrng = np.random.default_rng([seed, 2])
    rhythm = _Rhythm(w.profile)
    for p in w.profiles0:
        yield _PROFILE, p["msisdn"].encode(), orjson.dumps(p), False
    pend: dict[str, np.ndarray] | None = None
    pend_arr = np.empty(0, dtype=np.int64)
    for d in range(w.days + 2):
        if d < w.days:
            cols = _simulate_day(w, rng, d, rhythm)
            k = cols["kind"].size
            arr = cols["ts"] + (_lateness(rng, k, w.profile) if late else 0)
            prof = w.profile_updates.get(d, [])
        else:
            cols, arr, prof = None, np.empty(0, dtype=np.int64), []
        if pend is not None:
            cols = pend if cols is None else {c: np.concatenate([pend[c], cols[c]]) for c in _COLS}
            arr = np.concatenate([pend_arr, arr])
        if cols is None:
            break
        horizon = w.start_ts + (d + 1) * DAY_S if d < w.days else np.iinfo(np.int64).max
        due = arr < horizon
        order = np.flatnonzero(due)
        order = order[np.argsort(arr[order], kind="stable")]
        rest = np.flatnonzero(~due)
        pend = {c: cols[c][rest] for c in _COLS} if rest.size else None
        pend_arr = arr[rest]
        recs = _encode(w, cols, order)
        if prof:  # profile updates: insert at their arrival position
            parr = arr[order]
            for p in prof:
                pos = int(np.searchsorted(parr, p["ts"] + 30))
                recs.insert(pos, (_PROFILE, p["msisdn"].encode(), orjson.dumps(p)))
                parr = np.insert(parr, pos, p["ts"] + 30)
        bad = set()
        if malformed_rate > 0 and recs:
            nbad = int(mrng.binomial(len(recs), min(malformed_rate, 1.0)))
            bad = set(mrng.integers(0, len(recs), nbad).tolist())
        for j, (kind, key, val) in enumerate(recs):
            yield kind, key, val, False
            if j in bad:
                yield _CALL, key, _malformed_variant(mrng, val), True
        if d >= w.days and pend is None:
            break


def generate(
    n_subscribers: int,
    days: int = 90,
    seed: int = 0,
    *,
    start: str = DEFAULT_START,
    fmt: str = "bytes",
    malformed_rate: float = 0.0005,
    late: bool = True,
    mix: dict[str, float] | None = None,
    profile: Profile | str | None = None,
) -> tuple[Iterator, list[dict]]:
    """Plan a population and return ``(events, truth)``; see the package docstring.

    ``events`` is lazy (memory: one day of events plus the late carry-over); ``truth`` is the
    ground-truth rows (dicts with ``TRUTH_FIELDS``), available before iterating. ``profile`` is
    a ``Profile``, a name from ``PROFILE_NAMES`` (``"random"`` draws one from ``seed``) or None
    (the default population); ``mix``, if given, replaces the profile's archetype mix.
    """
    if fmt not in ("bytes", "dict", "records"):
        raise ValueError("fmt must be 'bytes', 'dict' or 'records'")
    w = _plan(n_subscribers, days, seed, start, mix, resolve_profile(profile, seed))
    recs = _iter_records(w, seed, malformed_rate, late)
    if fmt == "bytes":
        it: Iterator = (v for _, _, v, _ in recs)
    elif fmt == "records":
        it = ((TOPIC_KINDS[k], key, v) for k, key, v, _ in recs)
    else:
        it = ((v if bad else orjson.loads(v)) for _, _, v, bad in recs)
    return it, w.truth


# ----------------------------------------------------------------------------- truth file


def write_truth(path: str | Path, truth: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        wr = csv.DictWriter(f, fieldnames=TRUTH_FIELDS)
        wr.writeheader()
        wr.writerows(truth)


def read_truth(path: str | Path) -> list[dict]:
    """Read a truth CSV; ``churn_day``/``churn_ts``/``stop_day`` become int or None."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            for k in ("churn_day", "churn_ts", "stop_day", "tenure"):
                r[k] = int(r[k]) if r.get(k) not in (None, "") else None
            r["arpu"] = float(r["arpu"]) if r.get("arpu") not in (None, "") else None
            rows.append(r)
    return rows
