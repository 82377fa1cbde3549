# qserv-py: `make demo` runs a local cluster with sample data; `make test` runs the whole suite.
# Both install what they need (venv, Python packages, PostgreSQL server binaries) by themselves.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO_SRC := $(wildcard proto/qserv/rpc/v1/*.proto)

.PHONY: install demo test lint typecheck proto check-proto bench postgres clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The PostgreSQL metadata backend tests start a private server with Debian's binaries.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing PostgreSQL server (Debian package)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null); \
	fi
	@if ! command -v psql >/dev/null 2>&1; then \
		(apt-get install -y -qq postgresql-client >/dev/null) || true; \
	fi

proto: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --mypy_out=. $(PROTO_SRC)

lint: $(STAMP)
	$(VENV)/bin/ruff check qserv czar worker loader tests
	$(VENV)/bin/ruff format --check qserv czar worker loader tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy qserv czar worker loader

# Two test processes, each taking whole files (module-scoped clusters are started once): most
# cluster tests wait on processes and probes, so two at once nearly halve the suite's time.
test: $(STAMP) postgres lint typecheck
	$(VENV)/bin/pytest -q -x -n 2 --dist loadfile --durations=15

demo: $(STAMP)
	$(VENV)/bin/qserv demo --data-dir .demo

bench: $(STAMP)
	$(PY) -m tests.bench.run

clean:
	rm -rf .demo .bench build *.egg-info
