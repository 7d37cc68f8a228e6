# xbroker: `make run` starts the demo, `make test` runs the test suite.
# Both work on a fresh Debian/Ubuntu machine that has Python 3.11+, make and git:
# they create .venv, check (as root: install) the Debian packages they need, and start a
# project-local RabbitMQ node under .xbroker/ unless XBROKER_AMQP_URL names one that answers;
# `make test` also starts a project-local PostgreSQL cluster there unless
# XBROKER_DATABASE_URL names a server that answers.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
VENV_STAMP := $(VENV)/.xbroker-installed
# The node commands without the rest of the CLI, so a broken command module elsewhere
# cannot keep the node from starting or stopping.
NODE := $(VENV)/bin/python -m broker.commands.devnode
DB := $(VENV)/bin/python -m broker.commands.devdb
RABBITMQ_BIN := $(or $(XBROKER_RABBITMQ_BIN),/usr/lib/rabbitmq/bin)
# Debian installs each PostgreSQL major version under its own folder: any one will do.
POSTGRES_INITDB := $(if $(XBROKER_POSTGRES_BIN),$(XBROKER_POSTGRES_BIN)/initdb,/usr/lib/postgresql/*/bin/initdb)
PYTEST_ARGS ?=

# The first interpreter found that is Python 3.11 or newer (evaluated only when needed).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && \
	{ echo $$p; break; }; done)

# $(call require,CHECK=PACKAGE ...): each CHECK is a command name or an absolute path
# (which may hold a * that matches one folder).
# Missing packages are installed when we are root on Debian/Ubuntu (with services kept
# from starting: the tests start their own processes); otherwise we say what to install.
define require
missing=""; \
for spec in $(1); do \
	check=$${spec%%=*}; package=$${spec#*=}; \
	if [ "$${check#/}" != "$$check" ]; then compgen -G "$$check" >/dev/null || missing="$$missing $$package"; \
	else command -v "$$check" >/dev/null 2>&1 || missing="$$missing $$package"; fi; \
done; \
if [ -n "$$missing" ]; then \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing:$$missing" >&2; \
		policy=/usr/sbin/policy-rc.d; own_policy=""; \
		if [ ! -e "$$policy" ]; then \
			printf '#!/bin/sh\nexit 101\n' > "$$policy"; chmod 755 "$$policy"; own_policy=1; \
		fi; \
		status=0; \
		{ DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
		} || status=$$?; \
		if [ -n "$$own_policy" ]; then rm -f "$$policy"; fi; \
		if [ "$$status" != 0 ]; then echo "error: apt-get failed ($$status)" >&2; exit 1; fi; \
		for spec in $(1); do \
			check=$${spec%%=*}; \
			if [ "$${check#/}" != "$$check" ]; then compgen -G "$$check" >/dev/null; else command -v "$$check" >/dev/null; fi || \
				{ echo "error: $$check still missing after installing" >&2; exit 1; }; \
		done; \
	else \
		echo "Missing system packages:$$missing" >&2; \
		echo "Install them with:  sudo apt-get install$$missing" >&2; \
		echo "(or run 'make system-deps' as root on Debian/Ubuntu)." >&2; \
		echo "RabbitMQ may instead run in a container from docker-compose.yml:" >&2; \
		echo "  docker compose up -d rabbitmq" >&2; \
		echo "  export XBROKER_AMQP_URL=amqp://xbroker:xbroker@127.0.0.1:5672/" >&2; \
		echo "  export XBROKER_MANAGEMENT_URL=http://xbroker:xbroker@127.0.0.1:15672   # for make test" >&2; \
		echo "and PostgreSQL too:  docker compose up -d postgres" >&2; \
		echo "  export XBROKER_DATABASE_URL=postgresql://xbroker:xbroker@127.0.0.1:5432/xbroker" >&2; \
		exit 1; \
	fi; \
fi
endef

RABBITMQ_DEP := $(RABBITMQ_BIN)/rabbitmq-server=rabbitmq-server
POSTGRES_DEP := $(POSTGRES_INITDB)=postgresql
TEST_DEPS := $(RABBITMQ_DEP) $(POSTGRES_DEP) xmlsec1=xmlsec1 promtool=prometheus

# The official AsyncAPI CLI validates docs/asyncapi.yaml in the tests. It lives under
# .xbroker/node/ (tests/tools.py looks there), pinned: 4.1.1 is the last release that
# runs on the Node.js 20 this machine has; 5.x and 6.x ask for Node.js 24. npm's cache
# makes a second install (after `make clean`) work offline. Package scripts are not run.
ASYNCAPI_CLI_VERSION := 4.1.1
NODE_DIR := .xbroker/node
ASYNCAPI_STAMP := $(NODE_DIR)/.asyncapi-cli-$(ASYNCAPI_CLI_VERSION)

.PHONY: help run test lint node node-stop db db-stop clean system-deps system-deps-rabbitmq \
	system-deps-postgres .venv asyncapi-cli

help:
	@echo "make run          start RabbitMQ (local node) and the demo"
	@echo "make test         run the test suite against a real RabbitMQ (PYTEST_ARGS=...)"
	@echo "make lint         ruff check, ruff format --check, mypy --strict"
	@echo "make node         start or reuse the project-local RabbitMQ node"
	@echo "make node-stop    stop it"
	@echo "make db           start or reuse the project-local PostgreSQL cluster"
	@echo "make db-stop      stop it"
	@echo "make system-deps  check/install rabbitmq-server, postgresql, xmlsec1, prometheus"
	@echo "make asyncapi-cli install the AsyncAPI CLI under $(NODE_DIR) (needs npm)"
	@echo "make clean        stop the node and the cluster, remove .venv and .xbroker"

.venv: $(VENV_STAMP)

# Re-installs whenever pyproject.toml is newer than the stamp.
$(VENV_STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: Python 3.11 or newer is required; found: $$(python3 --version 2>&1 || echo none)." >&2; \
		echo "Install python3.11 (or newer) and run make again." >&2; exit 1; \
	fi
	@if [ ! -x $(VENV)/bin/python ]; then \
		echo "creating $(VENV) with $(PYTHON)" >&2; \
		if ! $(PYTHON) -m venv $(VENV); then \
			rm -rf $(VENV); \
			venv_package=$$($(PYTHON) -c 'import sys; print(f"python3.{sys.version_info[1]}-venv")'); \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
				DEBIAN_FRONTEND=noninteractive apt-get update -q; \
				DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$$venv_package"; \
				$(PYTHON) -m venv $(VENV); \
			else \
				echo "error: $(PYTHON) cannot create a virtualenv." >&2; \
				echo "Install it with:  sudo apt-get install $$venv_package" >&2; exit 1; \
			fi; \
		fi; \
	fi
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

system-deps:
	@$(call require,$(TEST_DEPS))

system-deps-rabbitmq:
	@$(call require,$(RABBITMQ_DEP))

system-deps-postgres:
	@$(call require,$(POSTGRES_DEP))

asyncapi-cli: $(ASYNCAPI_STAMP)

$(ASYNCAPI_STAMP):
	@$(call require,npm=npm)
	@echo "installing @asyncapi/cli $(ASYNCAPI_CLI_VERSION) under $(NODE_DIR)" >&2
	@mkdir -p $(NODE_DIR)
	npm install --prefix $(NODE_DIR) --prefer-offline --ignore-scripts --no-audit --no-fund \
		--loglevel=error --save-exact @asyncapi/cli@$(ASYNCAPI_CLI_VERSION)
	@rm -f $(NODE_DIR)/.asyncapi-cli-*
	@touch $@

node: .venv
	@$(NODE) probe >/dev/null 2>&1 || $(MAKE) --no-print-directory system-deps-rabbitmq
	@$(NODE) ensure

run: .venv
	@$(NODE) probe >/dev/null 2>&1 || $(MAKE) --no-print-directory system-deps-rabbitmq
	@url="$$($(NODE) ensure --print-url)"; \
	export XBROKER_AMQP_URL="$$url"; \
	exec $(VENV)/bin/xbroker demo

db: .venv
	@$(DB) probe >/dev/null 2>&1 || $(MAKE) --no-print-directory system-deps-postgres
	@$(DB) ensure

test: .venv system-deps asyncapi-cli
	@url="$$($(NODE) ensure --print-url)"; \
	export XBROKER_AMQP_URL="$$url"; \
	database="$$($(DB) ensure --print-url)"; \
	export XBROKER_DATABASE_URL="$$database"; \
	exec $(VENV)/bin/pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: .venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

node-stop:
	@if [ -x $(VENV)/bin/python ]; then $(NODE) stop; fi

db-stop:
	@if [ -x $(VENV)/bin/python ]; then $(DB) stop; fi

clean: node-stop
	@if [ -x $(VENV)/bin/python ]; then $(DB) remove; fi
	rm -rf $(VENV) .xbroker
