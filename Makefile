# Set-up, tests and the main job. Every target installs what it needs, from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: install plugins develop test demo pictures package clean

install: $(STAMP) plugins

# Reinstalled only when a requirements file changes: a second `make install` takes seconds.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

plugins: $(STAMP)
	$(PY) scripts/install_plugins.py

# Development: Ikomia's plugin folders become links to this checkout; edits take effect on the next run.
develop: $(STAMP)
	$(PY) scripts/install_plugins.py --link

test: install
	$(PY) -m pytest

demo: install
	$(PY) scripts/demo.py

# The README's pictures (docs/images/), from the demo's real run and the panels rendered offscreen.
pictures: demo
	$(PY) scripts/readme_pictures.py

package: $(STAMP)
	rm -rf dist
	$(PY) scripts/install_plugins.py --dest dist --zip

clean:
	rm -rf dist demo_output .pytest_cache
