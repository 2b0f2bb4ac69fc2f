# uffd-move-book: `make book` builds the HTML book, `make test` runs the tests.
# Both set up what they need (a local .venv and the vendored browser JS) on first use.

SHELL      := bash
PYTHON     ?= python3
VENV       := .venv
VPY        := $(VENV)/bin/python
# Marks a finished install; redone when a requirement file or pyproject.toml is newer.
# Its name also encodes which uffdsim/ folders have an __init__.py: setuptools' editable
# finder records package-vs-namespace at install time, so a new __init__.py needs a reinstall.
PKG_KEY    := $(shell find uffdsim -name __init__.py 2>/dev/null | LC_ALL=C sort | cksum | cut -d' ' -f1)
VENV_STAMP := $(VENV)/.installed-$(PKG_KEY)
VENDOR_STAMP := _vendor/.complete
# The pip a new venv is upgraded to (the one bundled with Python 3.11 resolves this lock about 2x slower).
PIP_VERSION := 26.3

.PHONY: all venv vendor book test clean distclean help bench-compaction

all: help

help:
	@echo "make book      build the book into _build/html (sets up .venv and _vendor first)"
	@echo "make test      build the book, then run pytest: tests/ (incl. the browser check), nbval on notebooks/"
	@echo "make venv      create/update .venv with the pinned toolchain"
	@echo "make vendor    fetch the widget/MathJax browser JS into _vendor/"
	@echo "make bench-compaction  re-measure data/compaction.json on this kernel (root, cc; a few minutes)"
	@echo "make clean     remove build and test outputs (keeps .venv)"
	@echo "make distclean clean, and remove .venv and _vendor too"

venv: $(VENV_STAMP)

$(VENV_STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 needed, $(PYTHON) is " + sys.version.split()[0])'
	@test -x $(VPY) || { echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV) && \
	  $(VPY) -m pip install --quiet --disable-pip-version-check 'pip==$(PIP_VERSION)'; }
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

vendor: $(VENDOR_STAMP)

$(VENDOR_STAMP): scripts/vendor_js.sh
	bash scripts/vendor_js.sh

book: venv vendor
	@start=$$(date +%s.%N); \
	$(VPY) scripts/build_live_wheels.py || exit 1; \
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/jupyter-book build . -W -n --keep-going --all; rc=$$?; \
	end=$$(date +%s.%N); \
	awk -v s="$$start" -v e="$$end" 'BEGIN { printf "book build wall time: %.1f s\n", e - s }'; \
	if [ $$rc -eq 0 ]; then echo "open $(CURDIR)/_build/html/index.html"; fi; \
	exit $$rc

# The book is built first: tests/test_book_pages.py opens the built pages in a headless browser.
test: book
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VPY) -m pytest

# What MOVE costs a running program (issue 22): 5 repeats, a 64 MiB heap, a 1 GiB long MOVE.
# Run it on a machine as quiet as you can find (the load average is recorded with the numbers).
bench-compaction: venv
	$(VPY) benchmarks/compaction.py --runs 5 --heap-mib 64 --munmap-mib 1024 --record data/compaction.json > /dev/null

clean:
	rm -rf _build .pytest_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
	find . -path ./$(VENV) -prune -o -name .ipynb_checkpoints -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) _vendor _vendor_test
