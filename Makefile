# The commands people run. `make demo` and `make test` work on a fresh machine: they create the
# virtualenv, install the package, and fetch the Kafka jars from Maven Central as needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
JARS   := .cache/kafka/libs/kafka_2.13-3.9.1.jar

.PHONY: venv kafka-jars prometheus-bin test demo bench bench-quick kafka-start kafka-stop clean

venv: $(STAMP)
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[setup] creating the virtualenv and installing churnwatch with its test extras (about 1-2 min on first run)..."
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,report]'
	@echo "[setup] Python packages installed"
	touch $(STAMP)

kafka-jars: $(JARS)
$(JARS): deploy/kafka/pom.xml | $(STAMP)
	@echo "[setup] assembling Apache Kafka 3.9.1 from Maven Central into .cache/kafka (about a minute, once)..."
	$(PY) -m stream.dev.kafka fetch

# Prometheus and promtool from Debian's package (for the metrics checks of the test suite), once;
# where apt cannot fetch it the suite says so and those checks skip.
PROM_DIR := .cache/prometheus
prometheus-bin:
	@test -x $(PROM_DIR)/usr/bin/promtool || { \
	  echo "[setup] fetching Prometheus + promtool from Debian's packages into $(PROM_DIR) (~20 MB, once)..."; \
	  mkdir -p $(PROM_DIR) && cd $(PROM_DIR) && apt-get download prometheus >/dev/null 2>&1 \
	    && dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb \
	    || echo "[setup] could not fetch Debian's prometheus package here: the promtool and scrape checks will skip"; }

# The suite is three pytest sessions at once: the pure tests (the engine's, no broker, no worker
# process, no fixed port; CPU-bound) beside two broker sessions, each with its own test broker
# (CHURNWATCH_TEST_KAFKA_PORT: its port and data dir), whose tests run one at a time (mostly
# waiting on workers, timeouts and restarts). One session took ~10 min, the pure tests beside
# it ~10.5 min in all, the three sessions ~7 (2026-12-07). pytest-xdist's --dist loadgroup
# would do this, but does not group under pytest 9.2 (pytest-dev/pytest-xdist#1386).
PURE_TESTS := tests/engine tests/test_tune.py tests/test_report.py tests/test_schemas.py
BROKER2_TESTS := tests/service/test_resilience.py tests/test_bench_smoke.py tests/service/test_health.py
BROKER2_PORT := 19292

test: venv kafka-jars prometheus-bin
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@mkdir -p var && rm -rf var/pytest-pure var/pytest-broker2 && \
	echo "[test] beside the broker tests below: the pure tests ($(PURE_TESTS)), var/pytest-pure.log; $(BROKER2_TESTS) on a second test broker, var/pytest-broker2.log"; \
	$(PY) -m pytest -q -p no:cacheprovider --basetemp=var/pytest-pure $(PURE_TESTS) > var/pytest-pure.log 2>&1 & pure=$$!; \
	CHURNWATCH_TEST_KAFKA_PORT=$(BROKER2_PORT) $(PY) -m pytest -q -p no:cacheprovider --durations=8 \
	  --basetemp=var/pytest-broker2 $(BROKER2_TESTS) > var/pytest-broker2.log 2>&1 & b2=$$!; \
	$(PY) -m pytest -q -p no:cacheprovider --durations=10 $(addprefix --ignore=,$(PURE_TESTS) $(BROKER2_TESTS)); rest=$$?; \
	wait $$b2; b2st=$$?; echo "[test] $(BROKER2_TESTS):"; cat var/pytest-broker2.log; \
	wait $$pure; pst=$$?; echo "[test] the pure tests:"; cat var/pytest-pure.log; \
	test $$rest -eq 0 && test $$b2st -eq 0 && test $$pst -eq 0

demo: venv kafka-jars
	$(VENV)/bin/churnwatch demo

bench: venv kafka-jars
	$(PY) -m bench.run

bench-quick: venv kafka-jars
	$(PY) -m bench.run --quick

kafka-start: venv kafka-jars
	$(PY) -m stream.dev.kafka start

kafka-stop: venv
	$(PY) -m stream.dev.kafka stop

clean:
	-$(PY) -m stream.dev.kafka stop
	rm -rf $(VENV) var .pytest_cache
