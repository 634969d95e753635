"""The wire contract in ``schemas/``: every schema is a valid draft 2020-12 schema, every example
validates (or fails) as its folder says, and the schemas agree with ``stream/contract.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from stream import contract

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
EXAMPLES = SCHEMAS / "examples"
INPUT_KINDS = ("call", "sms", "recharge", "profile")
KINDS = INPUT_KINDS + ("alarm", "deadletter", "event")
FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER


def load(kind: str) -> dict:
    return json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))


def registry() -> Registry:
    """All schemas by ``$id``, so ``event.schema.json`` resolves its relative ``$ref``s offline."""
    resources = [Resource.from_contents(load(k)) for k in KINDS]
    return Registry().with_resources((r.contents["$id"], r) for r in resources)


def validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(load(kind), registry=registry(), format_checker=FORMAT_CHECKER)


def examples(kind: str, label: str) -> list[Path]:
    return sorted((EXAMPLES / kind / label).glob("*.json"))


def all_examples() -> list:
    out = []
    for kind in KINDS:
        for label in ("valid", "invalid"):
            for path in examples(kind, label):
                out.append(pytest.param(kind, label, path, id=f"{kind}/{label}/{path.stem}"))
    return out


# ---------------------------------------------------------------------------------------------
# The schemas themselves


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_draft_2020_12(kind):
    schema = load(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith(f"/{kind}.schema.json")
    assert schema["title"] and schema["description"]


def _properties(node, path=""):
    """Yield (path, subschema) for every named property anywhere in a schema."""
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{path}.{name}", sub
        for key, sub in node.items():
            yield from _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _properties(sub, f"{path}[{i}]")


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_is_described(kind):
    undocumented = [p for p, sub in _properties(load(kind)) if not sub.get("description")]
    assert not undocumented, f"{kind}: fields without a description: {undocumented}"


@pytest.mark.parametrize("kind", KINDS)
def test_embedded_examples_are_valid(kind):
    v = validator(kind)
    for example in load(kind).get("examples", []):
        v.validate(example)


def test_format_checker_knows_the_formats_we_use():
    used = {sub["format"] for k in KINDS for _, sub in _properties(load(k)) if "format" in sub}
    assert used <= set(FORMAT_CHECKER.checkers), used


# ---------------------------------------------------------------------------------------------
# Examples


def test_every_kind_has_examples_of_both_labels():
    for kind in KINDS:
        assert len(examples(kind, "valid")) >= 2, kind
        assert len(examples(kind, "invalid")) >= 3, kind
    unexpected = {p.parent.parent.name for p in EXAMPLES.glob("*/*/*.json")} - set(KINDS)
    assert not unexpected
    assert {p.parent.name for p in EXAMPLES.glob("*/*/*.json")} == {"valid", "invalid"}


@pytest.mark.parametrize("kind,label,path", all_examples())
def test_example_validates_as_labelled(kind, label, path):
    instance = json.loads(path.read_text(encoding="utf-8"))
    errors = list(validator(kind).iter_errors(instance))
    if label == "valid":
        assert not errors, [e.message for e in errors]
    else:
        assert errors, f"{path.name} should be rejected by {kind}.schema.json"
        if kind != "event":  # oneOf reports one error per branch
            # each invalid example breaks one rule, the one its name says: all errors are about
            # the same field (a bad date can fail both `format` and `pattern`)
            assert len({tuple(e.absolute_path) for e in errors}) == 1, [e.message for e in errors]


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_valid_inputs_are_valid_events(kind):
    v = validator("event")
    for path in examples(kind, "valid"):
        v.validate(json.loads(path.read_text(encoding="utf-8")))


def test_bool_is_not_a_timestamp():
    # JSON Schema keeps booleans out of "number" (unlike Python's isinstance(True, int)).
    for kind in INPUT_KINDS:
        assert any(p.stem == "ts_is_bool" for p in examples(kind, "invalid")), kind


# ---------------------------------------------------------------------------------------------
# Agreement with stream/contract.py


def test_event_types_match_contract():
    assert tuple(load(k)["properties"]["type"]["const"] for k in INPUT_KINDS) == contract.EVENT_TYPES
    event = load("event")
    assert tuple(event["properties"]["type"]["enum"]) == contract.EVENT_TYPES
    assert [b["$ref"] for b in event["oneOf"]] == [f"{k}.schema.json" for k in contract.EVENT_TYPES]
    assert set(contract.KIND_CODES) == set(contract.EVENT_TYPES)


def test_input_enums_match_contract():
    for kind in ("call", "sms"):
        assert tuple(load(kind)["properties"]["direction"]["enum"]) == contract.DIRECTIONS
    assert tuple(load("profile")["properties"]["plan"]["enum"]) == contract.PLANS
    assert contract.OWN_OPERATOR in load("call")["properties"]["peer_operator"]["description"]


def test_msisdn_rule_is_the_same_everywhere():
    patterns = set()
    for kind in KINDS:
        schema = load(kind)
        if kind == "event" or kind == "deadletter":
            continue
        prop = schema["properties"]["msisdn"]
        if "$ref" in prop:
            prop = schema["$defs"][prop["$ref"].rsplit("/", 1)[1]]
        patterns.add(prop["pattern"])
    assert patterns == {"^[0-9]{5,20}$"}


def test_alarm_schema_matches_contract():
    alarm = load("alarm")
    props = alarm["properties"]
    assert tuple(alarm["required"]) == contract.ALARM_FIELDS
    assert set(contract.ALARM_FIELDS) <= set(props)
    assert tuple(props["phase"]["enum"]) == contract.ALARM_PHASES
    assert tuple(props["reason"]["enum"]) == contract.REASONS
    assert tuple(props["value_tier"]["enum"]) == contract.TIERS
    assert props["schema_version"]["const"] == contract.SCHEMA_VERSION
    assert tuple(props["previous_phase"]["enum"]) == contract.PHASES
    assert tuple(alarm["$defs"]["signal"]["properties"]["name"]["enum"]) == contract.SIGNALS
    assert alarm.get("additionalProperties", True) is True  # additive fields allowed


def test_deadletter_schema_matches_contract():
    dl = load("deadletter")
    assert tuple(dl["required"]) == contract.DEADLETTER_FIELDS
    assert set(contract.DEADLETTER_FIELDS) <= set(dl["properties"])
    assert dl["properties"]["schema_version"]["const"] == contract.SCHEMA_VERSION


def test_inputs_allow_additional_properties():
    for kind in INPUT_KINDS:
        assert load(kind).get("additionalProperties", True) is True, kind


def test_contract_alarm_id_and_vocabulary_produce_valid_alarms():
    """Every phase/reason/tier/signal the contract names is accepted, with a real alarm_id."""
    v = validator("alarm")
    base = json.loads(examples("alarm", "valid")[0].read_text(encoding="utf-8"))
    for phase in contract.ALARM_PHASES:
        for reason in contract.REASONS:
            for tier in contract.TIERS:
                rec = dict(
                    base,
                    phase=phase,
                    reason=reason,
                    value_tier=tier,
                    alarm_id=contract.alarm_id(base["msisdn"], phase, 20415),
                )
                rec["signals"] = [{"name": s, "value": 1.0, "threshold": 0.5} for s in contract.SIGNALS]
                v.validate(rec)
    assert contract.alarm_id("8613800001234", "alarm", 20415) == contract.alarm_id("8613800001234", "alarm", 20415)


def test_readme_documents_topics_and_keying():
    text = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    for topic in contract.DEFAULT_TOPICS.values():
        assert f"`{topic}`" in text, topic
    for kind in KINDS:
        assert f"{kind}.schema.json" in text, kind
    assert "msisdn" in text and "UTF-8" in text


# ---------------------------------------------------------------------------------------------
# Agreement with the decoder (stream/engine/decode.py): what the contract accepts, the worker
# must accept; what it rejects, the worker should dead-letter with the matching reason code.

# Known, harmless differences: the decoder is more lenient than the schema here.
DECODER_LENIENT = {
    ("call", "cell_id_is_list"): "the decoder ignores cell_id",
    ("call", "empty_peer_operator"): "the decoder takes any string as peer_operator",
    ("call", "imei_14_digits"): "the decoder also takes 14- and 16-digit IMEIs (no check digit / IMEISV)",
    ("call", "wrong_type"): "a call-shaped record typed 'sms' is a valid SMS: the decoder does not tie type to topic",
    ("recharge", "channel_not_string"): "the decoder ignores channel",
}
# Known differences the other way: contract-valid events the decoder rejects. Each one is a bug
# in the decoder (or the contract) to settle; they are listed so the suite shows them.
DECODER_STRICTER: dict[tuple[str, str], str] = {}


def _decoder_cases():
    out = []
    for kind in INPUT_KINDS + ("event",):
        for label in ("valid", "invalid"):
            for path in examples(kind, label):
                marks = []
                why = (DECODER_LENIENT if label == "invalid" else DECODER_STRICTER).get((kind, path.stem))
                if why:
                    marks.append(pytest.mark.xfail(reason=why, strict=True))  # strict: a fix shows up
                out.append(pytest.param(kind, label, path, id=f"{kind}/{label}/{path.stem}", marks=marks))
    return out


def _expected_reason(stem: str) -> str | None:
    if stem.startswith("missing_") or "_missing_" in stem:
        return "missing_field"
    if stem in ("unknown_type", "not_object"):
        return stem
    if stem == "wrong_type":
        return None  # depends on which kind the record then looks like
    return "invalid_field"


@pytest.mark.parametrize("kind,label,path", _decoder_cases())
def test_decoder_agrees_with_the_examples(kind, label, path):
    decode_mod = pytest.importorskip("stream.engine.decode")
    config_mod = pytest.importorskip("stream.engine.config")
    raw = path.read_bytes()
    batch, rejects = decode_mod.decode([raw], [None], config=config_mod.EngineConfig())
    if label == "valid":
        assert len(batch) == 1 and not rejects, rejects
    else:
        assert len(batch) == 0 and len(rejects) == 1, f"{path.name} was accepted by the decoder"
        expected = _expected_reason(path.stem)
        if expected is not None:
            assert rejects[0].reason == expected, rejects[0]
        assert rejects[0].reason in getattr(decode_mod, "REJECT_REASONS", (rejects[0].reason,))
        assert rejects[0].reason in load("deadletter")["properties"]["reason"]["examples"]
