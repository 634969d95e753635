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
        ({"type": "profile", "msisdn": M, "ts": T0, "plan": "prepaid", "activated": "2020-13-01"}, "invalid_field", "activated"),
        ({"type": "profile", "msisdn": M, "ts": T0, "plan": "prepaid", "key_group_member": 1}, "invalid_field", "key_group_member"),
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
        {"type": "profile", "msisdn": M, "ts": T0, "plan": "prepaid", "activated": "1970-01-11", "arpu": 88.5,
         "key_group_member": True},
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
