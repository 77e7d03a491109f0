"""nbgrader configuration for the Transformers course (assignment pw2_transformers).

Every nbgrader command run from this folder reads it: `make release`, `make solutions`, `make grade`,
`make feedback`, `make export`, and the formgrader.
"""

import os
import secrets
import sys

from nbgrader.preprocessors import (CheckCellMetadata, ClearHiddenTests, ClearMarkScheme, ClearOutput, ClearSolutions,
                                   ComputeChecksums, GetGrades, IncludeHeaderFooter, InstantiateTests, LockCells,
                                   SaveCells)
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # coursekit, next to this file
from coursekit.deadlines import LatePenalty  # noqa: E402
from coursekit.feedback import ExerciseSummary, FeedbackExporter  # noqa: E402
from coursekit.layout import gradebook_url  # noqa: E402
from coursekit.limit_output import LimitOutputSize  # noqa: E402
from coursekit.scoring import GradedExecute, RemoveGraderOnlyCells  # noqa: E402
from coursekit.sanitize import SanitizeNotebook  # noqa: E402
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import AssignLatePenalties, IgnorePattern, LimitOutput, SaveAutoGrades  # noqa: E402

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "transformers"
# The gradebook: SQLite gradebook.db at the top level by default; the environment variable GRADEBOOK_URL names
# another database instead, PostgreSQL for instance (postgresql://user@host/dbname; see the README). coursekit
# reads the same variable through the same function.
c.CourseDirectory.db_url = gradebook_url(c.CourseDirectory.root)

# Students hand in through the LMS, not nbgrader's exchange, which nobody uses here. The formgrader warns when the
# exchange folder is missing (its default, /usr/local/share/nbgrader/exchange, needs root to create), so it points
# at a folder of the course's own, created here: its Release and Collect buttons then only copy files in build/.
c.Exchange.root = os.path.join(c.CourseDirectory.root, "build", "exchange")
os.makedirs(c.Exchange.root, exist_ok=True)
# The formgrader's "Current configuration" panel would print this whole configuration on the page, the gradebook's
# URL included (and a password in it): keep it off.
c.FormgradeExtension.debug = False

# The release (release/pw2_transformers/): nbgrader's own steps, after removing the cells tagged `grader-only`
# (references, expected values and the verdicts of the hidden checks). They stay in source/, where only the grader
# reads them: never in a release, a solution, the gradebook or a student's kernel (coursekit/scoring.py).
c.GenerateAssignment.preprocessors = [RemoveGraderOnlyCells, IncludeHeaderFooter, InstantiateTests, LockCells,
                                      ClearSolutions, ClearOutput, CheckCellMetadata, ComputeChecksums, SaveCells,
                                      ClearHiddenTests, ClearMarkScheme, ComputeChecksums, CheckCellMetadata]

# The published solution (solutions/pw2_transformers/): the instructor notebook with its answers, without
# the hidden tests, the grader-only cells, the outputs or any execution, so that regenerating it always gives the
# same file.
c.CourseDirectory.solution_directory = "solutions"
c.GenerateSolution.preprocessors = [RemoveGraderOnlyCells, IncludeHeaderFooter, LockCells, ClearOutput, ClearMarkScheme,
                                    ClearHiddenTests]

# Files that never leave source/: the notebook's text twin lives in source_text/, but keep Python
# scripts and caches out of releases and autograded folders in any case.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py", "logs", "*.bin"]

# Grading. The notebook switches itself to small offline data when NBGRADER_EXECUTION is set; a whole
# submission runs in well under a minute on 2 CPU cores, and no single cell needs more than a few seconds.
c.Execute.timeout = 60
# After a cell's reply, nbclient waits this long for its last outputs; a cell that floods them (thousands of displays,
# cut by GradedExecute's budget) must not fail the whole hand-in when the machine is busy (nbclient's default: 4 s).
c.Execute.iopub_timeout = 30
# GradedExecute is nbgrader's Execute with every test cell's points computed outside the student's kernel, from
# the data its checks return, by the grader's own copy of the checks (coursekit/scoring.py); it also gives every
# cell, and the notebook, an output budget while it runs. SanitizeNotebook, right after the execution: outputs are
# data, never code; the student's Markdown is rendered without scripts or external loads (the feedback page and the
# formgrader both render this notebook). Runaway output: nbgrader's LimitOutput counts lines; LimitOutputSize also
# caps each output's size, so that a huge print can't make a huge autograded notebook or feedback page.
c.GradedExecute.course_root = c.CourseDirectory.root
# Cells the instructor notebook tags `demo` (locked cells that only show something: a training run, generation demos,
# a bonus) are skipped while a hand-in is graded, unless a cell that runs reads a name they bind (coursekit/demo_cells.py).
# False runs every cell, as before.
c.GradedExecute.skip_demo_cells = True
c.Autograde.autograde_preprocessors = [GradedExecute, SanitizeNotebook, IgnorePattern, ClearMetadataPreprocessor,
                                       LimitOutput, LimitOutputSize, SaveAutoGrades, AssignLatePenalties,
                                       CheckCellMetadata]
# Late penalty (coursekit/deadlines.py), written to the gradebook by AssignLatePenalties: 10% of the earned points
# for each started day past the due date (`make due`) or the student's extension (extensions/<assignment>.csv); one
# minute late is one started day; later than 5 days, every point. The LMS's times that carry no time zone (Moodle's
# zip times, its grading worksheet's dates) are in the Moodle server's zone: name it here, e.g. "Europe/Paris". Left
# empty, it is unknown: such times are never compared with a due date (grading an assignment that has one stops and
# says so); an assignment without a due date is graded as before.
c.AssignLatePenalties.plugin_class = LatePenalty
c.LatePenalty.percent_per_day = 10
c.LatePenalty.max_days = 5
c.Deadlines.lms_timezone = ""
# A student can tag a test cell `skip-execution` to keep it from running (and keep its points): only a tag
# nobody can guess is honoured.
c.Execute.skip_cells_with_tag = "skip-" + secrets.token_hex(16)

# Feedback (feedback/<student>/pw2_transformers/pw2_transformers.html): nbgrader shows the hidden tests in it by
# default; strip them. The check lines each test cell prints already say what failed and why.
# ExerciseSummary puts a table first: every exercise, its points, and the reasons of its failed checks.
# SanitizeNotebook (again: autograding ran it already) makes sure nothing a student wrote or displayed runs as code.
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, SanitizeNotebook, ExerciseSummary, CSSHTMLHeaderPreprocessor]
# The page: nbgrader's feedback template without its unnamed "Test cell" links, and the maths written as MathML, which
# browsers render offline (nbconvert's template loads MathJax from a CDN). One HTML file per student: `make feedback`
# copies nothing else into feedback/ (coursekit/feedback.py).
c.GenerateFeedback.exporter_class = FeedbackExporter

# An LMS download (`make collect ZIP=...`): Moodle's "Download all submissions" zip, one folder per student. Only
# notebooks are extracted and collected; the submission time is the grading worksheet's "Last modified (submission)"
# (make collect ... WORKSHEET=...), else each notebook's time in the zip (coursekit/collect.py).
c.ZipCollectApp.extractor_plugin = "coursekit.collect.MoodleExtractorPlugin"
c.ZipCollectApp.collector_plugin = "coursekit.collect.MoodleCollectorPlugin"
c.FileNameCollectorPlugin.valid_ext = [".ipynb"]
