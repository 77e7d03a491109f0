# The single entry point for instructors, TAs and CI. Every target is a thin wrapper over a documented
# nbgrader command or a `python -m coursekit` command; `make help` lists them.

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
# nbgrader, once nbgrader_config.py is known to load (nbgrader would silently fall back to its defaults).
NBGRADER := $(PY) -m coursekit nbgrader
# ASSIGNMENT=<name> limits a command to one assignment; by default each command acts on every assignment that has
# work for it (make grade: every assignment with hand-ins in submitted/).
ASSIGNMENT ?=
ONE := $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

# nbgrader runs `alembic` from the PATH; everything here runs offline (the Hugging Face Hub is not needed).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HUB_OFFLINE := 1

.PHONY: help setup notebook notebook-text release solutions samples due grade feedback export report similarity demo test lint catalogue catalogue-draws bench-notebook bench-grading bench-training gpu-check collect lab clean

help:
	@echo "Every command acts on every assignment that has work for it, or on one: make grade ASSIGNMENT=pw3_decoding"
	@echo "make setup       create .venv with requirements.txt (CPU torch)"
	@echo "make notebook    rebuild source/ notebook from source_text/ (after editing the text twin)"
	@echo "make notebook-text  rewrite source_text/ from the source/ notebook (after editing it in Jupyter)"
	@echo "make release     nbgrader generate_assignment: the student version in release/, its Colab badge from the GitHub remote"
	@echo "make solutions   the solution notebook in solutions/"
	@echo "make samples     demo submissions in submitted/demo-*/"
	@echo "make collect ZIP=download.zip ASSIGNMENT=name  put an LMS (Moodle) download into submitted/<student>/<assignment>/"
	@echo "                 WORKSHEET=worksheet.csv: Moodle's grading worksheet, whose \"Last modified (submission)\" gives the submission times"
	@echo "make due ASSIGNMENT=name DUE=\"2026-12-15 23:59 Europe/Paris\"  set the due date (without DUE: print it, the penalty and extensions/<assignment>.csv)"
	@echo "make grade       autograde the hand-ins in submitted/ new or changed since their last grading (FORCE=1: all; JOBS=N workers, default one per core; CLUSTER=tcp://host:8786 on Dask); reports/<assignment>/grading.csv"
	@echo "make feedback    one HTML feedback file per student in feedback/"
	@echo "make export      grades for the LMS in reports/grades.csv (every assignment, per exercise); WORKSHEET=file ASSIGNMENT=name fills Moodle's worksheet"
	@echo "make lab         JupyterLab on this course, with nbgrader's formgrader at /formgrader"
	@echo "make report      class report for TAs: reports/<assignment>/class_report.html (plots, failures, hand-ins to look at) and CSVs"
	@echo "make similarity  pairs of students whose answers are far more alike than the class's: reports/<assignment>/similarity.html and .csv (never changes a grade)"
	@echo "make demo        the whole cycle on the demo submissions of every assignment, ending with a table of scores for each"
	@echo "make test        the test suite"
	@echo "make catalogue-draws   judge each catalogue entry on several draws of the grading inputs (DRAWS=3): list those whose points depend on the draw"
	@echo "make catalogue   grade the catalogue of known mistakes and correct variants (ONLY=wrong-decode to pick), print what the public and hidden checks catch"
	@echo "make bench-notebook  CPU and wall seconds per hand-in of a batch (HAND_INS=8) graded by one worker (every run graded), warm and cold kernels, against plain nbconvert, per-cell times: reports/<assignment>/bench_grading.json"
	@echo "make bench-grading   grading throughput of 20 hand-ins, sequential against parallel, against plain nbconvert, and a Dask cluster against the local pool (SUBMISSIONS=N, ONLY_CLUSTER=1)"
	@echo "make bench-training  training throughput and time to overfit one batch (DEVICE=cuda on a GPU)"
	@echo "make gpu-check   on a CUDA machine: the checks give the same scores on the GPU as on the CPU, and a short training benchmark (DEVICE=cpu: a dry run): reports/gpu_check_<device>.json"
	@echo "Gradebook: SQLite gradebook.db, or the database GRADEBOOK_URL names (make grade GRADEBOOK_URL=postgresql://...)"

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
	$(PY) -m coursekit notebook $(ONE)

notebook-text: setup
	$(PY) -m coursekit notebook-text $(ONE)

# generate_assignment also records the assignment, its cells and hidden tests in gradebook.db.
release: setup
	$(PY) -m coursekit release $(ONE)

# The gradebook is SQLite gradebook.db unless GRADEBOOK_URL names another database (PostgreSQL: see the README);
# nbgrader_config.py and coursekit read that variable, from the environment or the make command line. Grading
# releases an assignment first when the gradebook does not know it yet (see coursekit/grading.py), so a database,
# which has no file to stand for it here, needs no target of its own.
ifeq ($(strip $(GRADEBOOK_URL)),)
gradebook.db:
	$(MAKE) release
else
.PHONY: gradebook.db
gradebook.db: setup
endif

solutions: setup gradebook.db
	$(PY) -m coursekit solutions $(ONE)

# Students already in submitted/ are never overwritten: nbgrader refuses, and says so.
collect: setup gradebook.db
	@test -n "$(ZIP)" || (echo "usage: make collect ZIP=path/to/download.zip ASSIGNMENT=<assignment>" && exit 2)
	$(PY) -m coursekit collect "$(ZIP)" $(ONE) $(if $(WORKSHEET),--worksheet "$(WORKSHEET)")

# The due date, in nbgrader's gradebook (Assignment.duedate); the late penalty is configured in nbgrader_config.py,
# extensions are in extensions/<assignment>.csv (student,due,reason), applied by make grade.
due: setup gradebook.db
	$(PY) -m coursekit due $(ONE) $(if $(DUE),"$(DUE)")

samples: setup
	$(PY) -m coursekit samples $(ONE)

# SANDBOX=off grades without the sandbox (student code then runs with your permissions): say it on purpose.
# JOBS=N grades N hand-ins at a time (default: one per core). Only hand-ins new or changed since their last grading
# are graded (all of them after the tests change); FORCE=1 grades every one again. CLUSTER=tcp://scheduler:8786 (or
# $$DASK_SCHEDULER_ADDRESS) grades on a Dask cluster, with a PostgreSQL gradebook (GRADEBOOK_URL).
grade: setup gradebook.db
	$(PY) -m coursekit grade $(ONE) $(if $(filter off,$(SANDBOX)),--no-sandbox) $(if $(JOBS),--jobs $(JOBS)) \
	  $(if $(filter-out 0,$(FORCE)),--force) $(if $(CLUSTER),--cluster "$(CLUSTER)")

feedback: setup gradebook.db
	$(PY) -m coursekit feedback $(ONE)

# WORKSHEET=<file> also fills in the grading worksheet downloaded from a Moodle assignment.
export: setup gradebook.db
	$(PY) -m coursekit export $(ONE) $(if $(WORKSHEET),--moodle-worksheet "$(WORKSHEET)")

# After `make grade`: one self-contained HTML page and CSV files in reports/.
report: setup
	$(PY) -m coursekit report $(ONE)

# Reads the hand-ins in submitted/ as grading does (never writes them); needs no grading. Informs only: no grade changes.
similarity: setup
	$(PY) -m coursekit similarity $(ONE)

demo: release solutions samples grade feedback export report
	@$(PY) -m coursekit scores $(ONE)
	@echo "Feedback: feedback/<student>/<assignment>/<assignment>.html   Grades: reports/grades.csv   Class reports: reports/<assignment>/class_report.html"

# The tests grade in throwaway courses, with throwaway gradebooks: never the database of a GRADEBOOK_URL.
test: setup
	env -u GRADEBOOK_URL $(PY) -m pytest

# JupyterLab in the course root: nbgrader's formgrader at http://localhost:8888/formgrader reads nbgrader_config.py
# (the same gradebook as make grade). The exchange points at build/exchange (see nbgrader_config.py).
lab: setup gradebook.db
	$(PY) -m jupyterlab --ServerApp.root_dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

catalogue: setup
	$(PY) -m coursekit catalogue $(ONE) $(if $(ONLY),--only $(ONLY))

# Each entry judged DRAWS times (default 3) on inputs drawn anew: lists those whose points change with the draw.
catalogue-draws: setup
	$(PY) -m coursekit catalogue $(ONE) $(if $(ONLY),--only $(ONLY)) --draws $(or $(DRAWS),3)

bench-notebook: setup
	$(PY) -m coursekit bench-notebook $(ONE) $(if $(HAND_INS),--hand-ins $(HAND_INS)) $(if $(REPEATS),--repeats $(REPEATS))

bench-grading: setup
	$(PY) -m coursekit bench-grading $(ONE) $(if $(SUBMISSIONS),--submissions $(SUBMISSIONS)) $(if $(ONLY_CLUSTER),--only-cluster)

# Not a test: minutes on a CPU. Figures go in the README. DEVICE=cuda times fp16 autocast on a GPU.
DEVICE ?= cpu
bench-training: setup
	$(PY) -m coursekit bench-training $(ONE) --device $(DEVICE)

# On a CUDA machine, under 10 minutes: the checks on the GPU give the CPU's scores; reports/gpu_check_cuda.json.
# DEVICE=cpu: a dry run on a machine without a GPU. DEVICE here defaults to cuda (bench-training's to cpu).
gpu-check: setup
	$(PY) -m coursekit gpu-check $(ONE) --device $(if $(filter file,$(origin DEVICE)),cuda,$(DEVICE))

lint: setup
	$(PY) -m ruff check coursekit tests source_text

# Removes the demo hand-ins and what was made from them, and the build folder; never real hand-ins or the gradebook.
clean:
	rm -rf build downloaded submitted/demo-* autograded/demo-* feedback/demo-*
