# Set-up, tests and the main job. Every target installs what it needs, from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: install plugins test demo package clean

install: $(STAMP) plugins

# Reinstalled only when a requirements file changes: a second `make install` takes seconds.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

plugins: $(STAMP)
	$(PY) scripts/install_plugins.py

test: install
	$(PY) -m pytest

demo: install
	$(PY) scripts/demo.py

package: $(STAMP)
	rm -rf dist
	$(PY) scripts/install_plugins.py --dest dist --zip

clean:
	rm -rf dist demo_output .pytest_cache
