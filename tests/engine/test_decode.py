"""decode: raw bytes -> columnar batch + rejects with a low-cardinality reason."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream.engine import REJECT_REASONS, Engine, EngineConfig, ReferenceEngine

from .gen import T0

M = "8613800001234"
CALL = {"type": "call", "msisdn": M, "ts": T0, "direction": "out", "peer": "8613900000001", "duration_s": 30}


def dec(*events, keys=None, cls=Engine):
    eng = cls(EngineConfig(), clock=lambda: 4e9)
    raws = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    return eng.decode(raws, keys=keys)


def with_(**kw):
    e = dict(CALL)
    for k, v in kw.items():
        if v is ...:
            e.pop(k)
        else:
            e[k] = v
    return e


@pytest.mark.parametrize(
    "raw, reason, detail",
    [
        (b"{not json", "invalid_json", None),
        (b"", "invalid_json", None),
        (b"[1, 2]", "not_object", "list"),
        (b"42", "not_object", "int"),
        ({"msisdn": M, "ts": T0}, "missing_field", "type"),
        ({"type": "fax", "msisdn": M, "ts": T0}, "unknown_type", "fax"),
        (with_(ts=True), "invalid_field", "ts"),  # booleans are not numbers
        (with_(ts="1760000000"), "invalid_field", "ts"),  # a string is not a number
        (with_(ts=-5), "invalid_field", "ts"),
        (with_(ts=...), "missing_field", "ts"),
        (with_(msisdn="86138abc"), "invalid_field", "msisdn"),
        (with_(msisdn=8613800001234), "invalid_field", "msisdn"),  # digits as a string
        (with_(msisdn="1234"), "invalid_field", "msisdn"),  # 5..20 digits (alarm contract)
        (with_(direction="sideways"), "invalid_field", "direction"),
        (with_(peer="+8613900000001"), "invalid_field", "peer"),
        (with_(duration_s=-1), "invalid_field", "duration_s"),
        (with_(duration_s=12.5), "invalid_field", "duration_s"),
        (with_(duration_s=...), "missing_field", "duration_s"),
        (with_(imei="12345"), "invalid_field", "imei"),
        ({"type": "recharge", "msisdn": M, "ts": T0, "amount": 0}, "invalid_field", "amount"),
        ({"type": "recharge", "msisdn": M, "ts": T0, "amount": False}, "invalid_field", "amount"),
        ({"type": "profile", "msisdn": M, "ts": T0, "plan": "gold"}, "invalid_field", "plan"),
        (
            {"type": "profile", "msisdn": M, "ts": T0, "plan": "prepaid", "activated": "2020-13-01"},
            "invalid_field",
            "activated",
        ),
        (
            {"type": "profile", "msisdn": M, "ts": T0, "plan": "prepaid", "key_group_member": 1},
            "invalid_field",
            "key_group_member",
        ),
        ({"type": "sms", "msisdn": M, "ts": T0, "direction": "in"}, "missing_field", "peer"),
    ],
)
@pytest.mark.parametrize("cls", [Engine, ReferenceEngine])
def test_rejects(raw, reason, detail, cls):
    good = orjson.dumps(CALL)
    batch, rejects = dec(good, raw, good, cls=cls)
    assert [r.index for r in rejects] == [1]
    assert rejects[0].reason == reason and reason in REJECT_REASONS
    if detail is not None:
        assert detail in rejects[0].detail
    # rejects never stop the batch
    assert batch.idx.tolist() == [0, 2]


def test_key_mismatch_and_matching_keys():
    batch, rejects = dec(CALL, CALL, CALL, keys=[M.encode(), b"8613800009999", None])
    assert [(r.index, r.reason) for r in rejects] == [(1, "key_mismatch")]
    assert batch.idx.tolist() == [0, 2]


@pytest.mark.parametrize("cls", [Engine, ReferenceEngine], ids=lambda c: c.__name__)
def test_keys_are_checked_one_by_one_whatever_their_neighbours(cls):
    # the keys are compared joined first (one comparison for a batch whose keys all match); each
    # of these must still be found or passed exactly as the key-by-key rule says
    others = [with_(msisdn=f"86138000{i:05d}") for i in range(40)]
    keys = [e["msisdn"].encode() for e in others]
    cases = {
        3: (b"8613800009999", "key_mismatch"),  # another number
        7: (keys[7] + b"\n" + keys[8], "key_mismatch"),  # two keys' bytes in one: the join must not line up
        11: (bytearray(keys[11]), None),  # the same bytes in another buffer type
        15: (keys[15][:-1], "key_mismatch"),  # a prefix
        20: (None, None),  # no key
        39: (b"", "key_mismatch"),  # an empty key, at the end
    }
    ks = list(keys)
    for i, (k, _) in cases.items():
        ks[i] = k
    batch, rejects = dec(*others, keys=ks, cls=cls)
    want = [(i, r) for i, (_, r) in sorted(cases.items()) if r]
    assert [(r.index, r.reason) for r in rejects] == want
    assert len(batch) == len(others) - len(want)
    # a newline inside an msisdn (an invalid one, rejected as such) does not make the join line up
    bad = [with_(msisdn="8613800000001\n8613800000002"), with_(msisdn="8613800000003")]
    _, rejects = dec(*bad, keys=[b"8613800000001", b"8613800000002\n8613800000003"], cls=cls)
    assert {(r.index, r.reason) for r in rejects} == {(0, "invalid_field"), (1, "key_mismatch")}
    _, rejects = dec(*others, keys=keys, cls=cls)  # all matching: nothing
    assert rejects == []


def test_columns_and_derived_fields():
    events = [
        with_(peer="8613012345678", imei="356000000000001", extra={"ignored": True}),  # cu prefix 130 -> competitor
        with_(peer="8613812345678", direction="in"),  # own network
        with_(peer="10010"),  # competitor care hotline, outgoing
        with_(peer="10086"),  # our own care line: not a competitor
        with_(peer="10000", direction="in"),  # incoming from a hotline is not a dial
        with_(peer="8613812345678", peer_operator="ct"),  # explicit operator wins (ported number)
        {"type": "sms", "msisdn": M, "ts": T0 + 1.5, "direction": "out", "peer": "8618912345678"},
        {"type": "recharge", "msisdn": M, "ts": T0, "amount": 30.25, "channel": "app"},
        {
            "type": "profile",
            "msisdn": M,
            "ts": T0,
            "plan": "prepaid",
            "activated": "1970-01-11",
            "arpu": 88.5,
            "key_group_member": True,
        },
    ]
    b, rejects = dec(*events)
    assert rejects == []
    assert b.comp.tolist() == [True, False, False, False, False, True, True, False, False]
    assert b.hotline.tolist() == [False, False, True, False, False, False, False, False, False]
    assert b.out.tolist()[:2] == [True, False]
    assert b.imei[0] == 356000000000001 and b.imei[1] == 0
    assert b.cents[7] == 3025
    assert (b.plan[8], b.activated[8], b.arpu_c[8], b.key_group[8]) == (1, 10, 8850, 1)
    assert b.kind.tolist() == [0, 0, 0, 0, 0, 0, 1, 2, 3]
    assert b.ts[6] == T0 + 1.5
    assert (b.day == EngineConfig().day_of(T0)).all()
    assert b.off.tolist() == list(range(9))  # default offsets: a running sequence


def test_default_offsets_keep_running_across_batches():
    eng = Engine(EngineConfig(), clock=lambda: 4e9)
    b1, _ = eng.decode([orjson.dumps(CALL)] * 3)
    b2, _ = eng.decode([orjson.dumps(CALL)] * 2)
    assert b1.off.tolist() == [0, 1, 2] and b2.off.tolist() == [3, 4]
    b3, _ = eng.decode([orjson.dumps(CALL)] * 2, src=np.array([1, 1]), offsets=np.array([70, 71]))
    assert b3.src.tolist() == [1, 1] and b3.off.tolist() == [70, 71]


# ---------------------------------------------------------------- bad lines inside a batch (issue 12)

BAD_LINES = [
    b"{not json",  # invalid_json
    b"",  # invalid_json
    b'{"type":"call","msisdn":"86138',  # invalid_json (a truncated line swallows the next one when joined)
    b"[1, 2]",  # not_object
    b"null",  # not_object
    b'{"type":"fax","msisdn":"8613800001234","ts":1}',  # unknown_type
    b'{"msisdn":"8613800001234","ts":1760000000}',  # missing_field type
    orjson.dumps(with_(duration_s=...)),  # missing_field
    orjson.dumps(with_(direction=None)),  # missing_field (null)
    orjson.dumps(with_(ts="1760000000")),  # invalid_field
    orjson.dumps(with_(msisdn="86138abc")),  # invalid_field
    orjson.dumps(with_(imei="12345")),  # invalid_field
    orjson.dumps(with_(peer_operator=7)),  # invalid_field
    orjson.dumps({"type": "recharge", "msisdn": M, "ts": T0, "amount": 0.004}),  # invalid_field (0 cents)
    orjson.dumps({"type": "sms", "msisdn": M, "ts": T0, "direction": "in", "peer": "+1"}),  # invalid_field
]


def _valid_lines(n: int, seed: int) -> list[bytes]:
    """Calls/SMS/recharges/profiles, optional fields present or absent, shuffled field order."""
    import random

    rng = random.Random(seed)
    out = []
    for j in range(n):
        m = f"86138{rng.randrange(10**8):08d}"
        r = rng.random()
        if r < 0.6:
            e = with_(
                msisdn=m,
                ts=T0 + j,
                peer=f"861{rng.choice('0389')}{rng.randrange(10**9):09d}",
                direction=rng.choice(["in", "out"]),
                duration_s=rng.randrange(0, 3600),
            )
            if rng.random() < 0.5:
                e["imei"] = f"356{rng.randrange(10**12):012d}"
            if rng.random() < 0.1:
                e["peer_operator"] = rng.choice(["cu", "ct", "cm"])
        elif r < 0.85:
            e = {
                "type": "sms",
                "msisdn": m,
                "ts": T0 + j + 0.5,
                "direction": "out",
                "peer": rng.choice(["10010", "8613012345678"]),
            }
        elif r < 0.97:
            e = {"type": "recharge", "msisdn": m, "ts": T0 + j, "amount": rng.choice([10, 30.25, 50])}
        else:
            e = {"type": "profile", "msisdn": m, "ts": T0 + j, "plan": "prepaid", "arpu": 55.5}
        items = list(e.items())
        rng.shuffle(items)
        out.append(orjson.dumps(dict(items)))
    return out


def _one_by_one(raws, keys, cls):
    """Each line decoded alone, as one batch (offsets as in the batch)."""
    eng = cls(EngineConfig(), clock=lambda: 4e9)
    rows, rejects = [], []
    for i, r in enumerate(raws):
        b, rej = eng.decode([r], keys=None if keys is None else [keys[i]], offsets=np.array([i]))
        rejects += [(i, x.reason, x.detail) for x in rej]
        rows.append(b)
    return rows, rejects


@pytest.mark.parametrize("where", ["start", "middle", "end", "everywhere"])
@pytest.mark.parametrize("n", [7, 300, 2000])
@pytest.mark.parametrize("with_keys", [False, True])
def test_bad_lines_in_a_batch_decode_as_one_by_one(where, n, with_keys):
    raws = _valid_lines(n, seed=n)
    pos = {
        "start": [0, 1],
        "middle": [n // 2, n // 2 + 1],
        "end": [n - 2, n - 1],
        "everywhere": sorted({0, n // 3, n // 2, n // 2 + 1, n - 1}),
    }[where]
    for k, i in enumerate(pos):
        raws[i] = BAD_LINES[(k * 7 + n) % len(BAD_LINES)]
    if where == "everywhere":  # every kind once
        raws = raws[:1] + BAD_LINES + raws[1:]
    keys = None
    if with_keys:
        keys = []
        for r in raws:
            try:
                keys.append(str(orjson.loads(r).get("msisdn")).encode())
            except Exception:
                keys.append(None)
        keys[-3] = b"8613899999999"  # key_mismatch (unless that line is rejected for another reason first)
    eng = Engine(EngineConfig(), clock=lambda: 4e9)
    batch, rejects = eng.decode(raws, keys=keys)
    rows, want_rejects = _one_by_one(raws, keys, Engine)
    assert [(r.index, r.reason, r.detail) for r in rejects] == want_rejects
    assert len(want_rejects) >= len(pos)
    for name in batch.__dataclass_fields__:
        got = getattr(batch, name)
        exp = [v for b in rows for v in (b.off if name == "idx" else getattr(b, name))]
        assert list(got) == exp, name
        if not isinstance(got, list):
            assert got.dtype == getattr(rows[0], name).dtype, name


# ---------------------------------------------------------------- the typed fast path equals the exact rules

_ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    12.5,
    -0.0,
    1e10,
    1e11,
    86400,
    86401,
    1e300,
    "",
    "x",
    "0",
    "out",
    "in",
    "١٢٣٤٥٦٧",
    "86138000012345678901",
    "8613800001234",
    "356000000000000",
    "12345678901234567",
    [],
    {},
    [1],
]
_FIELDS = ["type", "msisdn", "ts", "direction", "peer", "duration_s", "imei", "peer_operator", "amount", "plan", "x"]


def _mutate(line: bytes, rng) -> bytes:
    """One dirty variant of a valid line: a field set to an odd value or dropped, the bytes cut,
    doubled or made invalid UTF-8, a key repeated, or non-ASCII text in an unknown field."""
    o = orjson.loads(line)
    k = rng.randrange(8)
    if k == 0:
        o[rng.choice(_FIELDS + list(o))] = rng.choice(_ODD_VALUES)
    elif k == 1:
        o.pop(rng.choice(list(o)))
    elif k == 2:
        return line[: rng.randrange(len(line))]
    elif k == 3:
        return line[:-1] + b',"note":"\xff\xfe"}'
    elif k == 4:
        return line[:-1] + b',"msisdn":"8613800009999"}'  # a repeated key: the last one counts
    elif k == 5:
        o["note"] = "用户 ünïcode"
    elif k == 6:
        return rng.choice([b"[" + line + b"]", line + line, b" " + line + b"\n", line.replace(b'"', b"'", 2)])
    elif o.get("type") == "recharge":
        o["amount"] = rng.choice([0.004, 0.005, 0.006, 0, -1, "50", 999999999.99, 1e9, 0.1 + 0.2])
    else:
        o["ts"] = rng.choice([o.get("ts", T0), T0 + 0.123456789, int(T0), 9.99e10])
    return orjson.dumps(o)


@pytest.mark.parametrize("seed", range(6))
def test_typed_fast_path_equals_exact_rules(seed):
    """decode (msgspec typed structs) == decode_exact (orjson dicts, the contract field by field):
    the same rows, columns, rejects and reasons, on lines dirty in every way the fuzzer knows."""
    import random

    from stream.engine.decode import decode, decode_exact

    rng = random.Random(seed)
    raws = _valid_lines(3000, seed=100 + seed)
    for i in rng.sample(range(len(raws)), 600):
        raws[i] = _mutate(raws[i], rng)
    keys = None
    if seed % 2:
        keys = []
        for r in raws:
            try:
                keys.append(str(orjson.loads(r).get("msisdn")).encode())
            except Exception:
                keys.append(rng.choice([None, b"", b"8613800001234"]))
        for i in rng.sample(range(len(keys)), 30):
            keys[i] = b"8613899999999"
    cfg = EngineConfig()
    got, got_rej = decode(raws, keys, config=cfg)
    exp, exp_rej = decode_exact(raws, keys, config=cfg)
    assert [(r.index, r.reason, r.detail) for r in got_rej] == [(r.index, r.reason, r.detail) for r in exp_rej]
    assert len(exp_rej) > 100 and len(exp) > 2000  # the fuzz reaches both paths
    for name in exp.__dataclass_fields__:
        g, e = getattr(got, name), getattr(exp, name)
        assert list(g) == list(e), name
        if not isinstance(e, list):
            assert g.dtype == e.dtype, name
