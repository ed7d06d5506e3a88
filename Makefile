# Set-up, tests and the main job. Every target installs what it needs, from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
CLIENT := .ikcli
CLIENT_STAMP := $(CLIENT)/.installed

.PHONY: install plugins develop test test-fast demo pictures package clean

install: $(STAMP) plugins $(CLIENT_STAMP)

# The core installed editable with the plugins' platform and the test tools (pyproject.toml states every pin);
# reinstalled only when pyproject.toml changes: a second `make install` takes seconds.
$(STAMP): pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[plugins,dev]"
	touch $@

# Ikomia's publishing client (ikomia-cli), apart from .venv's packages: README, Publishing to Ikomia HUB.
$(CLIENT_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m resnext_tools.publish install --folder $(CLIENT)
	touch $@

plugins: $(STAMP)
	$(PY) -m resnext_tools.plugins

# Development: Ikomia's plugin folders become links to this checkout's; edits take effect on the next run.
develop: $(STAMP)
	$(PY) -m resnext_tools.plugins --link

test: install
	$(PY) -m pytest

# The loop to run while changing code: every test but those that train, build an engine, start processes or
# package the plugins (marked slow); about a minute on 2 cores.
test-fast: install
	$(PY) -m pytest -m "not slow"

demo: install
	$(PY) -m resnext_tools.demo

# The README's pictures (docs/images/), from the demo's real run and the panels rendered offscreen.
pictures: demo
	$(PY) -m resnext_tools.pictures

package: $(STAMP)
	rm -rf dist
	$(PY) -m resnext_tools.plugins --dest dist --zip

clean:
	rm -rf dist demo_output .pytest_cache $(CLIENT)
