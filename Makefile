# mamori: `make run` starts the gateway with embedded defaults; `make test` installs everything
# (virtualenv, dependencies, the real peers the end-to-end tests drive) and runs all tests.
# the interpreter the virtualenv is made from: a distribution's optimised python3 when there
# is one (scripts/pick-python says why), else python3 from PATH
PYTHON ?= $(shell scripts/pick-python)
VENV ?= .venv
BIN := $(VENV)/bin
export MAMORI_SERVICES_DIR ?= $(CURDIR)/.services

.PHONY: run test venv lint typecheck services-up services-down clean sink

$(VENV)/.installed: pyproject.toml
	@echo "making $(VENV) from $(PYTHON) ($$($(PYTHON) -c 'import sys; print(sys.version.split()[0])'))"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

run: venv
	MAMORI_DATA_DIR=$${MAMORI_DATA_DIR:-$(CURDIR)/var} $(BIN)/mamori serve

test: venv
	scripts/test.sh

lint: venv
	$(BIN)/ruff check gateway tests perf

typecheck: venv
	$(BIN)/mypy gateway

services-up: venv
	scripts/services.sh up

services-down:
	scripts/services.sh down

clean:
	rm -rf $(VENV) .services var build *.egg-info

# A throwaway next hop that prints what mamori relays (for trying `make run` alone).
sink: venv
	$(BIN)/python -m aiosmtpd -n -c aiosmtpd.handlers.Debugging -l 127.0.0.1:10026
