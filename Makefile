# bdmeter — `make demo` runs the main job, `make test` passes the tests.
# Both set up what they need on a fresh machine (pinned venv from PyPI, Debian's mosquitto).

VENV   := .venv
PY     := $(VENV)/bin/python
MP     := $(VENV)/bin/micropython
PORT   ?= /dev/ttyUSB0
CONFIG ?= config.json
PYTEST_ARGS ?=
# test files run in parallel (one file stays on one worker): most of a system test's time is waiting
PYTEST_JOBS ?= 3
SIM_ARGS ?=

.PHONY: all venv deps mpy romfs typings typecheck test unit lint run sim deploy bench soak demo clean help web-deps

all: test

help:
	@echo "make demo    - fleet of simulated terminals, head-end, status table, query, regional map, line loss"
	@echo "make demo SERVE=1 - the same, then the web dashboard on it until Ctrl-C"
	@echo "make test    - lint + unit tests on CPython and MicroPython + port and system tests"
	@echo "make bench   - benchmarks, printed and written to build/bench.json"
	@echo "make soak    - long soak with seeded faults and power cuts"
	@echo "make deps    - fetch micropython-umqtt.simple and micropython-logging into build/lib"
	@echo "make mpy     - compile firmware/ and lib/ to build/mpy with mpy-cross"
	@echo "make romfs   - pack build/mpy into a ROMFS image (build/bdmeter.romfs), size printed"
	@echo "make typecheck - check firmware/ and lib/ against the ESP32 and RP2 ports' stubs (mypy)"
	@echo "make run CONFIG=cfg.json     - check the config, then run the firmware under the unix port"
	@echo "make sim [CONFIG=cfg.json] [SIM_ARGS='--mqtt-port 11883'] - mosquitto, simulators, head-end, firmware"
	@echo "make deploy PORT=/dev/ttyACM0 CONFIG=cfg.json [DRY_RUN=1] - ROMFS image (or .mpy files) to a board"
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

romfs: mpy
	@$(PY) -m tools.romfs

typings: venv
	@$(PY) -m tools.typecheck --install --no-check

typecheck: typings deps
	@$(PY) -m tools.typecheck

test: lint mpy typecheck web-deps
	@$(PY) -m pytest -n $(PYTEST_JOBS) --dist loadfile $(PYTEST_ARGS)

unit: venv deps
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# the config is checked on the host first: a missing or invalid file is refused with every problem listed
run: mpy
	@$(PY) -m tools.run $(CONFIG)

# CONFIG only when given on the command line; otherwise tools/sim_all.py writes one for its ports
sim: mpy
	@$(PY) -m tools.sim_all $(if $(filter command line,$(origin CONFIG)),--config $(CONFIG)) $(SIM_ARGS)

# The board is looked for before anything is built, so `make deploy` without one says so at once.
deploy:
	$(if $(DRY_RUN)$(wildcard $(PORT)),,$(error deploy: no board at $(PORT): connect one, or name its port: make deploy PORT=/dev/ttyACM0))
	@$(MAKE) --no-print-directory mpy
	@$(PY) -m tools.deploy --port $(PORT) --config $(CONFIG) $(if $(DRY_RUN),--dry-run)

bench: mpy
	@$(PY) -m tools.bench

soak: mpy
	@$(PY) -m tools.soak

# SERVE=1: keep the demo running and serve the dashboard on it until Ctrl-C
demo: mpy web-deps
	@$(PY) -m tools.demo $(if $(SERVE),--serve)

clean:
	rm -rf build
