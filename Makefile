# The single entry point for instructors, TAs and CI. Every target is a thin wrapper over a documented
# nbgrader command or a `python -m coursekit` command; `make help` lists them.

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
NBGRADER := $(PY) -m nbgrader
ASSIGNMENT := pw2_transformers

# nbgrader runs `alembic` from the PATH; everything here runs offline (the Hugging Face Hub is not needed).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE := 1

.PHONY: help setup notebook notebook-text release solutions samples grade feedback export demo test lint catalogue bench-notebook bench-training collect clean

help:
	@echo "make setup       create .venv with requirements.txt (CPU torch)"
	@echo "make notebook    rebuild source/ notebook from source_text/ (after editing the text twin)"
	@echo "make notebook-text  rewrite source_text/ from the source/ notebook (after editing it in Jupyter)"
	@echo "make release     nbgrader generate_assignment: the student version in release/"
	@echo "make solutions   the solution notebook in solutions/"
	@echo "make samples     demo submissions in submitted/demo-*/"
	@echo "make collect ZIP=download.zip  put an LMS (Moodle) download into submitted/<student>/"
	@echo "make grade       autograde every submission in submitted/; report in reports/grading.csv"
	@echo "make feedback    one HTML feedback file per student in feedback/"
	@echo "make export      grades as CSV in reports/grades.csv"
	@echo "make demo        the whole cycle on the demo submissions, ending with a table of scores"
	@echo "make test        the test suite"
	@echo "make catalogue   grade the catalogue of known mistakes and correct variants, print what the checks catch"
	@echo "make bench-notebook  time the autograding of one submission"
	@echo "make bench-training  training throughput and time to overfit one batch (DEVICE=cuda on a GPU)"

setup: $(VENV)/.installed

# Debian packages: bubblewrap is the grading sandbox; chromium (headless) and postgresql are used by the tests
# (the class report and formgrader pages, the PostgreSQL gradebook). Installing them needs root, as on CI.
DEBIAN_PACKAGES := bubblewrap chromium postgresql
$(VENV)/.installed: requirements.txt
	@command -v bwrap >/dev/null && command -v chromium >/dev/null && command -v pg_ctlcluster >/dev/null \
	  || apt-get install -y $(DEBIAN_PACKAGES) >/dev/null 2>&1 \
	  || (apt-get update >/dev/null 2>&1 && apt-get install -y $(DEBIAN_PACKAGES) >/dev/null 2>&1) \
	  || echo "WARNING: could not install $(DEBIAN_PACKAGES): without bubblewrap \`make grade\` refuses to run student code unsandboxed"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

notebook: setup
	$(PY) -m coursekit notebook

notebook-text: setup
	$(PY) -m coursekit notebook-text

# generate_assignment also records the assignment, its cells and hidden tests in gradebook.db.
release: setup
	$(NBGRADER) generate_assignment $(ASSIGNMENT) --force

gradebook.db:
	$(MAKE) release

solutions: setup gradebook.db
	$(NBGRADER) generate_solution $(ASSIGNMENT) --force

# Students already in submitted/ are never overwritten: nbgrader refuses, and says so.
collect: setup gradebook.db
	@test -n "$(ZIP)" || (echo "usage: make collect ZIP=path/to/download.zip" && exit 2)
	rm -rf downloaded/$(ASSIGNMENT)
	mkdir -p downloaded/$(ASSIGNMENT)/archive
	cp "$(ZIP)" downloaded/$(ASSIGNMENT)/archive/
	$(NBGRADER) zip_collect $(ASSIGNMENT)

samples: setup
	$(PY) -m coursekit samples

# SANDBOX=off grades without the sandbox (student code then runs with your permissions): say it on purpose.
grade: setup gradebook.db
	$(PY) -m coursekit grade $(if $(filter off,$(SANDBOX)),--no-sandbox)

feedback: setup gradebook.db
	$(NBGRADER) generate_feedback $(ASSIGNMENT) --force

export: setup gradebook.db
	mkdir -p reports
	$(NBGRADER) export --to reports/grades.csv

demo: release solutions samples grade feedback export
	@$(PY) -m coursekit scores
	@echo "Feedback: feedback/<student>/$(ASSIGNMENT)/$(ASSIGNMENT).html   Grades: reports/grades.csv"

test: setup
	$(PY) -m pytest

catalogue: setup
	$(PY) -m coursekit catalogue

bench-notebook: setup
	$(PY) -m coursekit bench-notebook

# Not a test: minutes on a CPU. Figures go in the README. DEVICE=cuda times fp16 autocast on a GPU.
DEVICE ?= cpu
bench-training: setup
	$(PY) -m coursekit bench-training --device $(DEVICE)

lint: setup
	$(PY) -m ruff check coursekit tests

# Removes the demo hand-ins and what was made from them, and the build folder; never real hand-ins or the gradebook.
clean:
	rm -rf build downloaded submitted/demo-* autograded/demo-* feedback/demo-*
