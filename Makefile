# Entry point for every routine task. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAFKA_LIB := .cache/kafka/lib
KAFKA_DATA ?= .cdp-data/kafka
KAFKA_PORT ?= 9092
KAFKA_CONTROLLER_PORT ?= 9093
CONNECT_LIB := .cache/connect/lib
CONNECT_DATA ?= .cdp-data/connect
CONNECT_PORT ?= 8083
KAFKA_CLUSTER_DATA ?= .cdp-data/kafka-cluster
KAFKA_CLUSTER_PORTS ?= 19092,19093,19094
KAFKA_CLUSTER_CONTROLLER_PORTS ?= 19095,19096,19097
BENCH ?= quick
CHROMIUM ?= /usr/bin/chromium
SDK_PACKAGES := tests/e2e/browser/package.json tests/e2e/browser/package-lock.json
SDK_DIR := .cache/browser-sdks
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-unit chaos bench lint format kafka-fetch kafka-up kafka-down kafka-cluster-up \
	kafka-cluster-down connect-fetch connect-up connect-down postgres clean venv browser screenshots

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

kafka-fetch: $(KAFKA_LIB)/.fetched
$(KAFKA_LIB)/.fetched: deploy/kafka/pom.xml
	mkdir -p $(KAFKA_LIB)
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	    -DoutputDirectory=$(abspath $(KAFKA_LIB))
	touch $@

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used) with the stock
# Segment and RudderStack browser SDKs, installed from npm at the versions the lock file pins.
browser: $(CHROMIUM) $(SDK_DIR)/.installed
$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
$(SDK_DIR)/.installed: $(SDK_PACKAGES)
	mkdir -p $(SDK_DIR)
	cp $(SDK_PACKAGES) $(SDK_DIR)/
	cd $(SDK_DIR) && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

# Starts a local broker unless CDP_KAFKA_BOOTSTRAP points at one; in a session (process group) of its own, so a
# signal to `make run`'s group stops cdp first and the broker after it (deploy/run.sh).
kafka-up: kafka-fetch
	@if [ -z "$$CDP_KAFKA_BOOTSTRAP" ]; then \
	    setsid -w deploy/kafka/broker.sh start $(KAFKA_DATA) $(KAFKA_PORT) $(KAFKA_CONTROLLER_PORT); \
	else echo "using Kafka at $$CDP_KAFKA_BOOTSTRAP"; fi

kafka-down:
	deploy/kafka/broker.sh stop $(KAFKA_DATA)

# Kafka Connect with the Debezium PostgreSQL connector, for sources of kind postgres (README "Pull sources").
connect-fetch: $(CONNECT_LIB)/.fetched
$(CONNECT_LIB)/.fetched: deploy/connect/pom.xml
	mkdir -p $(CONNECT_LIB)
	mvn -q -B -f deploy/connect/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	    -DoutputDirectory=$(abspath $(CONNECT_LIB))
	touch $@

connect-up: connect-fetch
	deploy/connect/connect.sh start $(CONNECT_DATA) $(CONNECT_PORT) $${CDP_KAFKA_BOOTSTRAP:-127.0.0.1:$(KAFKA_PORT)} \
	    $${CDP_TOPIC_PREFIX:-cdp}

connect-down:
	deploy/connect/connect.sh stop $(CONNECT_DATA)

# The PostgreSQL server (Debian's package) for the database-source tests; they start their own in a folder of
# their own, so the package's default cluster is not created.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	    mkdir -p /etc/postgresql-common && echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

# A 3-broker KRaft cluster on loopback (replication 3, min ISR 2); what cdp needs on it: deploy/kafka/README.md.
kafka-cluster-up: kafka-fetch
	deploy/kafka/cluster.sh start $(KAFKA_CLUSTER_DATA) $(KAFKA_CLUSTER_PORTS) $(KAFKA_CLUSTER_CONTROLLER_PORTS)

kafka-cluster-down:
	deploy/kafka/cluster.sh stop $(KAFKA_CLUSTER_DATA)

run: venv kafka-up
	@LOCAL_BROKER=$$([ -n "$$CDP_KAFKA_BOOTSTRAP" ] || echo yes) \
	CDP_KAFKA_BOOTSTRAP=$${CDP_KAFKA_BOOTSTRAP:-127.0.0.1:$(KAFKA_PORT)} deploy/run.sh $(KAFKA_DATA) $(BIN)/cdp run

# The suite starts its own broker on free ports and its own chDB folder (tests/conftest.py).
test: venv kafka-fetch connect-fetch postgres browser
	$(BIN)/pytest $(PYTEST_ARGS)

# 1280x800 PNGs of every console page, taken by its browser test against a real stack, into .screenshots/ (git
# ignores it; the README shows two of them from docs/).
screenshots: venv kafka-fetch browser
	CONSOLE_SCREENSHOTS=$(abspath .screenshots) $(BIN)/pytest -q tests/e2e/test_console.py -k every_page

# What needs no broker (and so no Maven): every test not marked e2e.
test-unit: venv
	$(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

# Fault injection against the real stack, every run in full (make test runs two of them short): tests/chaos.
chaos: venv kafka-fetch
	CHAOS=full $(BIN)/pytest tests/chaos -s $(PYTEST_ARGS)

bench: venv kafka-fetch connect-fetch postgres
	$(BIN)/python -m bench.run --mode $(BENCH)

# Ruff (with SLF), strict mypy on the production packages, and the import layering of the rooms.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy streams schemas identity sinks api cdp
	$(BIN)/pytest -q -p no:cacheprovider tests/test_layering.py

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	-deploy/connect/connect.sh stop $(CONNECT_DATA)
	-deploy/kafka/broker.sh stop $(KAFKA_DATA)
	-deploy/kafka/cluster.sh stop $(KAFKA_CLUSTER_DATA)
	rm -rf .cdp-data .bench .pytest_cache .ruff_cache .mypy_cache
