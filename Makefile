PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install typecheck test demo faults bench clean kafka-jars browser

# The stamp reinstalls only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

# Apache Kafka's broker (pinned in kafka/pom.xml) and its runtime jars, from Maven Central, once.
KAFKA_JARS := kafka/jars/.fetched
$(KAFKA_JARS): kafka/pom.xml
	@command -v mvn >/dev/null 2>&1 || { echo "error: mvn not found: install Maven (apt-get install maven) or set FLOORWATCH_KAFKA_HOME to an Apache Kafka install"; exit 1; }
	rm -rf kafka/jars
	mvn -q -B -Dstyle.color=never -f kafka/pom.xml package
	@touch $@

kafka-jars: $(KAFKA_JARS)

# Headless Chromium for the console's browser test (tests/integration/test_console.py), from Debian's
# packages when apt-get can install them (root); without it that test is skipped with the reason.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "note: chromium not installed: the console's browser test will be skipped"; \
	else echo "note: chromium missing (apt-get install chromium): the console's browser test will be skipped"; fi

# mypy over stream_app/ (config: pyproject.toml [tool.mypy]); `make test` runs it first.
typecheck: install
	$(BIN)/mypy

# Apache Kafka's part of the suite runs whenever Java is here (jars fetched once); without Java or
# Maven it is skipped, except under CI=true, where it fails.
test: install typecheck browser
	@if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then $(MAKE) --no-print-directory kafka-jars; \
	else echo "note: Java or Maven missing: the Apache Kafka tests will be skipped (fail under CI=true)"; fi
	$(BIN)/pytest -q

demo: install
	$(BIN)/floorwatch demo

# The slow fault scenarios (minutes each), beside the ones `make test` runs.
faults: install kafka-jars
	$(BIN)/pytest -q -m slow tests/faults

bench: install
	$(BIN)/floorwatch bench

clean:
	rm -rf $(VENV) .floorwatch *.egg-info kafka/jars kafka/target .mypy_cache
