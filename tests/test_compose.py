"""The docker-compose stack, checked without Docker: the files parse and agree with each other and
with the code (settings, metrics, CLI arguments)."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
from pathlib import Path, PurePosixPath

import pytest
import yaml

from stream.settings import ENV_VARS, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DASHBOARD_METRICS = (
    "churnwatch_events_total",
    "churnwatch_rejects_total",
    "churnwatch_alarms_total",
    "churnwatch_batch_seconds",
    "churnwatch_event_time_lag_seconds",
    "churnwatch_subscribers",
    "churnwatch_sweep_seconds",
    "churnwatch_consumer_lag",
    "churnwatch_stalled_partitions",
    "churnwatch_broker_reachable",
    "churnwatch_checkpoint_seconds",
    "churnwatch_decisions_held_seconds",
    "churnwatch_deadletters_total",
)


# ---------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str]:
    """A service's environment as str -> str (mapping or list form; merge keys already applied)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def host_and_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, addr = item.strip().partition("://")
        out[name] = host_and_port(addr)
    return out


def published(service: dict) -> dict[int, int]:
    """container port -> host port, from short ("h:c", "ip:h:c") or long port syntax."""
    out = {}
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out[int(p["target"])] = int(p.get("published", p["target"]))
        else:
            parts = str(p).split("/")[0].split(":")
            out[int(parts[-1])] = int(parts[-2]) if len(parts) > 1 else int(parts[-1])
    return out


def mounts(service: dict) -> dict[str, str]:
    """container path -> source (host path or volume name), short or long volume syntax."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            out[v["target"]] = v["source"]
        else:
            parts = v.split(":")
            out[parts[1]] = parts[0]
    return out


def host_file(source: str) -> Path:
    assert source.startswith("./"), f"{source}: expected a path relative to the compose file"
    return ROOT / source[2:]


def worker_settings(services) -> Settings:
    return Settings.from_env(env_of(services["worker"]))


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(value: str) -> list[str]:
    return json.loads(value) if value.startswith("[") else shlex.split(value)


# ---------------------------------------------------------------------------------------------
# services and the worker's settings


def test_services(services):
    assert {"kafka", "worker", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:3.9.1"
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    assert services["worker"]["build"]["context"] == "."
    assert (ROOT / services["worker"]["build"].get("dockerfile", "Dockerfile")).is_file()


def test_ports_are_published_on_loopback_only(services):
    """The worker's views, the broker, Prometheus and Grafana are not exposed beyond the host."""
    for name, svc in services.items():
        for port in svc.get("ports", []):
            spec = (
                port
                if isinstance(port, str)
                else f"{port.get('host_ip', '')}:{port.get('published')}:{port.get('target')}"
            )
            assert spec.startswith("127.0.0.1:"), (name, spec)


def test_worker_environment_is_known_settings(services):
    env = env_of(services["worker"])
    unknown = sorted(set(env) - set(ENV_VARS))
    assert not unknown, f"not settings of stream/settings.py: {unknown}"
    s = Settings.from_env(env)  # parses and validates
    assert s.bootstrap_servers == "kafka:9092"
    assert (s.web_host, s.web_port) == ("0.0.0.0", 6066)
    assert s.data_dir == "/data"
    assert s.store.startswith("rocksdb://")


def test_other_churnwatch_services_use_known_settings(services):
    for name, svc in services.items():
        if svc.get("image", "").startswith("churnwatch") or "build" in svc:
            env = env_of(svc)
            assert set(env) <= set(ENV_VARS), name
            Settings.from_env(env)


def test_worker_data_dir_is_a_volume(compose, services):
    s = worker_settings(services)
    source = mounts(services["worker"]).get(s.data_dir)
    assert source, f"no volume at CHURNWATCH_DATA_DIR={s.data_dir}"
    assert source in (compose.get("volumes") or {}), "the worker's state should survive a container restart"
    kafka_data = env_of(services["kafka"])["KAFKA_LOG_DIRS"]
    assert mounts(services["kafka"]).get(kafka_data) in compose["volumes"], (
        "broker data must live as long as the worker's"
    )


def test_worker_port_is_exposed_and_published(services):
    worker = services["worker"]
    port = worker_settings(services).web_port
    assert port in {int(p) for p in worker.get("expose", [])}
    assert port in published(worker)
    assert published(worker)[port] == port


def test_worker_starts_after_the_broker(services):
    deps = services["worker"]["depends_on"]
    chain, seen = list(deps), set()
    while chain:  # kafka directly or through the topics one-shot
        name = chain.pop()
        seen.add(name)
        chain.extend(set(services[name].get("depends_on") or []) - seen)
    assert "kafka" in seen


# ---------------------------------------------------------------------------------------------
# kafka


def test_kafka_is_single_node_kraft(services):
    env = env_of(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == 1 and voters[0].startswith(f"{node_id}@")
    listen = listeners(env["KAFKA_LISTENERS"])
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listen) <= set(protocol_map)
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listen
    assert host_and_port(voters[0].split("@")[1])[1] == listen[controller][1]
    assert env["CLUSTER_ID"]
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[key] == "1", key


def test_kafka_internal_listener_is_the_workers_bootstrap(services):
    env = env_of(services["kafka"])
    listen = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    internal = env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    bootstrap = worker_settings(services).bootstrap_servers
    assert f"{advertised[internal][0]}:{advertised[internal][1]}" == bootstrap
    assert advertised[internal][0] == "kafka" and listen[internal][1] == advertised[internal][1]
    # the host listener is published on the same port it advertises
    external = [n for n in advertised if n != internal]
    assert external, "no listener for access from the host"
    for name in external:
        host, port = advertised[name]
        assert host in ("localhost", "127.0.0.1")
        assert published(services["kafka"]).get(listen[name][1]) == port


def test_topics_match_the_workers_settings(services):
    """The one-shot topic creation makes exactly the worker's topics, co-partitioned."""
    if "topics" not in services:
        pytest.skip("no topic-creation service")
    s = worker_settings(services)
    script = services["topics"]["command"]
    script = "\n".join(script) if isinstance(script, list) else script
    loop = re.search(r"for t in ([^;\n]+);", script)
    assert loop, script
    assert set(loop.group(1).split()) == set(s.input_topics) | {s.topic_alarms, s.topic_deadletter}
    assert re.findall(r"--partitions (\d+)", script) == [str(s.partitions)]
    assert env_of(services["kafka"]).get("KAFKA_NUM_PARTITIONS") == str(s.partitions)  # auto-created ones too


# ---------------------------------------------------------------------------------------------
# prometheus and grafana


def test_prometheus_scrapes_the_worker(services):
    port = worker_settings(services).web_port
    config_path = host_file(mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"])
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    targets = []
    for job in config["scrape_configs"]:
        if job.get("metrics_path", "/metrics") != "/metrics":
            continue
        for sc in job.get("static_configs", []):
            targets.extend(sc["targets"])
    assert f"worker:{port}" in targets


def _grafana_files(services):
    m = mounts(services["grafana"])
    provisioning = host_file(m["/etc/grafana/provisioning"])
    return m, provisioning


def test_grafana_provisioning(services):
    m, provisioning = _grafana_files(services)
    ds_files = sorted((provisioning / "datasources").glob("*.yml"))
    db_files = sorted((provisioning / "dashboards").glob("*.yml"))
    assert ds_files and db_files
    datasources = [d for f in ds_files for d in yaml.safe_load(f.read_text(encoding="utf-8"))["datasources"]]
    prom = [d for d in datasources if d["type"] == "prometheus"]
    assert len(prom) == 1 and prom[0]["url"] == "http://prometheus:9090"
    for f in db_files:
        for provider in yaml.safe_load(f.read_text(encoding="utf-8"))["providers"]:
            path = provider["options"]["path"]
            assert path in m, f"dashboard provider path {path} is not mounted"
            assert list(host_file(m[path]).glob("*.json"))


def _dashboard(services) -> dict:
    m, _ = _grafana_files(services)
    path = host_file(m["/var/lib/grafana/dashboards"]) / "churnwatch.json"
    return json.loads(path.read_text(encoding="utf-8"))


def test_dashboard_panels(services):
    _, provisioning = _grafana_files(services)
    ds_uid = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))[
        "datasources"
    ][0]["uid"]
    dash = _dashboard(services)
    assert dash["uid"] and dash["title"]
    exprs = []
    ids = []
    for panel in dash["panels"]:
        ids.append(panel["id"])
        assert panel["title"] and panel["targets"], panel.get("title")
        assert panel["datasource"]["uid"] == ds_uid
        for t in panel["targets"]:
            exprs.append(t["expr"])
    assert len(ids) == len(set(ids))
    text = "\n".join(exprs)
    for metric in DASHBOARD_METRICS:
        assert metric in text, f"no panel for {metric}"
    assert re.search(r"histogram_quantile\(0\.99, sum by \(le\) \(rate\(churnwatch_batch_seconds_bucket", text)


def _exposed_series() -> dict[str, set[str]]:
    """Series name -> label names, from the service's own Metrics object (a fresh registry)."""
    metrics_mod = pytest.importorskip("stream.service.metrics")
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics import MetricWrapperBase

    registry = CollectorRegistry()
    metrics = metrics_mod.Metrics(registry)
    for metric in vars(metrics).values():  # give every labelled metric one child, so it has samples
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            metric.labels(*["x"] * len(metric._labelnames))
    series: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def test_dashboard_queries_match_the_exposed_metrics(services):
    """Every series a panel queries exists, and every ``by (...)`` label is one it carries."""
    series = _exposed_series()
    for panel in _dashboard(services)["panels"]:
        for t in panel["targets"]:
            names = set(re.findall(r"\bchurnwatch_[a-z0-9_]+", t["expr"]))
            assert names <= set(series), (panel["title"], names - set(series))
            if "ALERTS{" in t["expr"]:
                continue  # Prometheus' own series of the alerting rules (deploy/prometheus/alerts.yml)
            labels = {lbl.strip() for group in re.findall(r"by \(([^)]*)\)", t["expr"]) for lbl in group.split(",")}
            labels -= {"instance", "job", ""}
            carried = set().union(*(series[n] for n in names))
            assert labels <= carried, (panel["title"], labels - carried)


# ---------------------------------------------------------------------------------------------
# the image


def test_dockerfile_installs_the_package_and_runs_the_worker(services):
    assert DOCKERFILE.is_file()
    instr = dockerfile_instructions()
    froms = [rest for word, rest in instr if word == "FROM"]
    assert froms[-1].split()[0] == "python:3.11-slim"
    runs = " ".join(rest for word, rest in instr if word == "RUN")
    assert re.search(r"pip (install|wheel)\b[^&]*\s(\.|churnwatch)(\s|$)", runs), "the package is not pip-installed"
    assert any(word == "COPY" and "pyproject.toml" in rest for word, rest in instr)
    assert any(word == "COPY" and rest.split()[0] == "stream" for word, rest in instr)
    entrypoint = [exec_form(rest) for word, rest in instr if word == "ENTRYPOINT"]
    cmd = [exec_form(rest) for word, rest in instr if word == "CMD"]
    entry = entrypoint[-1] if entrypoint else []
    assert entry + (cmd[-1] if cmd else []) == ["churnwatch", "worker"]
    # compose's `command` replaces CMD: the worker service still runs `churnwatch worker`
    command = services["worker"].get("command")
    if command is not None:
        assert entry + (exec_form(command) if isinstance(command, str) else command) == ["churnwatch", "worker"]
    port = worker_settings(services).web_port
    exposed = {int(p.split("/")[0]) for word, rest in instr if word == "EXPOSE" for p in rest.split()}
    assert port in exposed


def test_dockerfile_defaults_are_known_settings():
    env = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    churnwatch = {k: v for k, v in env.items() if k.startswith(("CHURNWATCH_", "KAFKA_"))}
    assert set(churnwatch) <= set(ENV_VARS)
    Settings.from_env(churnwatch)


def test_dockerignore_keeps_the_build_inputs():
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    for needed in ("stream", "pyproject.toml", "README.md"):
        assert not any(PurePosixPath(needed).match(pat) or pat.rstrip("/") == needed for pat in lines), needed
    for heavy in (".git", ".venv", "var", ".cache"):
        assert heavy in lines, heavy


def test_demo_simulator_command_parses(services):
    sim = services.get("simulator")
    if sim is None:
        pytest.skip("no simulator service")
    assert "demo" in sim.get("profiles", [])
    entry = ["churnwatch"]
    command = sim["command"] if isinstance(sim["command"], list) else shlex.split(sim["command"])
    argv = entry + command
    assert argv[:2] == ["churnwatch", "simulate"] and "--kafka" in argv
    simulate = pytest.importorskip("stream.tools.simulate")
    parser = argparse.ArgumentParser()
    simulate.add_arguments(parser)
    args = parser.parse_args(argv[2:])
    assert args.kafka
    assert importlib.import_module("stream.cli").COMMANDS["simulate"][0] == "stream.tools.simulate"
