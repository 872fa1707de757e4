# bdmeter — `make demo` runs the main job, `make test` passes the tests.
# Both set up what they need on a fresh machine (pinned venv from PyPI, Debian's mosquitto).

VENV   := .venv
PY     := $(VENV)/bin/python
MP     := $(VENV)/bin/micropython
PORT   ?= /dev/ttyUSB0
CONFIG ?= config.json
PYTEST_ARGS ?=

.PHONY: all venv deps mpy test unit lint run deploy bench soak demo clean help web-deps

all: test

help:
	@echo "make demo    - fleet of simulated terminals, head-end, status table, query, regional map, line loss"
	@echo "make demo SERVE=1 - the same, then the web dashboard on it until Ctrl-C"
	@echo "make test    - lint + unit tests on CPython and MicroPython + port and system tests"
	@echo "make bench   - benchmarks, printed and written to build/bench.json"
	@echo "make soak    - long soak with seeded faults and power cuts"
	@echo "make deps    - fetch micropython-umqtt.simple and micropython-logging into build/lib"
	@echo "make mpy     - compile firmware/ and lib/ to build/mpy with mpy-cross"
	@echo "make run CONFIG=cfg.json     - run the firmware under the unix port"
	@echo "make deploy PORT=/dev/ttyUSB0 - copy build/mpy to a board with mpremote"
	@echo "make web-deps - install the dashboard's pinned npm libraries into tools/headend/web/node_modules"

$(VENV)/.installed: requirements-dev.txt tools/bootstrap.sh
	@bash tools/bootstrap.sh

venv: $(VENV)/.installed

build/lib/.pins: requirements-mpy.txt $(VENV)/.installed
	@$(PY) tools/fetch_deps.py
	@$(MP) -c "import sys; sys.path.insert(0, 'build/lib'); from umqtt.simple import MQTTClient; import logging; print('deps import under the unix port: umqtt.simple, logging')"

deps: build/lib/.pins

WEB := tools/headend/web
$(WEB)/node_modules/.installed: $(WEB)/package-lock.json
	@cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

web-deps: $(WEB)/node_modules/.installed

mpy: deps
	@$(PY) tools/build_mpy.py

lint: venv
	@$(VENV)/bin/ruff check .

test: lint mpy web-deps
	@$(PY) -m pytest $(PYTEST_ARGS)

unit: venv deps
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

run: mpy
	@$(PY) -m tools.mpunix build/mpy/main.py $(CONFIG)

deploy: mpy
	@test -e $(PORT) || { echo "deploy: no board at $(PORT) (set PORT=...)"; exit 1; }
	$(VENV)/bin/mpremote connect $(PORT) fs cp -r build/mpy/lib build/mpy/firmware : + \
		fs cp build/mpy/boot.py build/mpy/main.py : + \
		$(if $(wildcard $(CONFIG)),fs cp $(CONFIG) :config.json +) reset

bench: mpy
	@$(PY) -m tools.bench

soak: mpy
	@$(PY) -m tools.soak

# SERVE=1: keep the demo running and serve the dashboard on it until Ctrl-C
demo: mpy web-deps
	@$(PY) -m tools.demo $(if $(SERVE),--serve)

clean:
	rm -rf build
