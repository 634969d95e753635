"""The alerting rules shipped for Prometheus (``deploy/prometheus/alerts.yml``): promtool accepts
them and their unit tests pass (``alerts_test.yml``: when each alert fires and when it must not),
every metric they read is one the worker exports, and docker-compose's Prometheus loads them.
``tests/service/test_service.py`` evaluates them against a live worker's metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from .service.harness import prometheus_tool

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass(tmp_path):
    promtool = prometheus_tool("promtool")
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # the unit tests name each alert's labels and summary, not its description (long prose)
    doc = yaml.safe_load(RULES.read_text())
    for g in doc["groups"]:
        for r in g["rules"]:
            r["annotations"].pop("description")
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    out = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_every_alert_is_tested_and_says_what_it_means():
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    for r in _rules():
        assert r["alert"] in tested, f"{r['alert']} has no unit test in alerts_test.yml"
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert r["annotations"]["summary"] and len(r["annotations"]["description"]) > 80, r["alert"]


def test_every_metric_an_alert_reads_is_one_the_worker_exports():
    from stream.service.metrics import Metrics

    exported = set()
    for fam in Metrics().registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(fam.type, ("",))
        exported.update(fam.name + s for s in suffixes)
    read = {m for r in _rules() for m in re.findall(r"\bchurnwatch_[a-z_]+", r["expr"])}
    assert read and read <= exported, sorted(read - exported)


def test_compose_prometheus_loads_the_rules():
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert "/etc/prometheus/alerts.yml" in prom["rule_files"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert (
        "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in compose["services"]["prometheus"]["volumes"]
    )
