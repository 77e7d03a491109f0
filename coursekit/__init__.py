"""Tooling for the auto-graded Transformers course: build the notebook, make sample submissions, grade them.

One module per concern:
- `layout`: where everything lives in the course directory.
- `notebook_text`: the instructor notebook <-> its percent-format text twin; the checks engine into its helpers cell.
- `notebook_checks`: the checks engine the notebook carries (probe, verdict; local, probe and record modes) and
  the plain data that crosses the kernel's boundary.
- `colab`: the "Open in Colab" badge in the notebook's header, and the repository it points to.
- `answers`: solution code out of the instructor notebook, and answers into a release notebook.
- `samples`: demo submissions (correct, untouched, typical mistakes, damaged files).
- `collect`: the nbgrader zip_collect plugin for Moodle downloads.
- `intake`: checks every hand-in under submitted/ and stages the gradable ones, never touching submitted/.
- `repair`: rebuilds a damaged hand-in on the release notebook (metadata, duplicates, deleted cells...).
- `sandbox`: the bubblewrap sandbox that the grading kernel runs in.
- `scoring`: nbgrader's Execute with every test cell's points computed outside the kernel, from its probes' data.
- `sanitize`: makes an autograded notebook's outputs and student Markdown safe to render (no scripts, no loads).
- `limit_output`: caps the size of outputs, while the notebook runs and after.
- `workers`: a process pool that replaces a dead worker and retries its hand-in once.
- `spreadsheet`: neutralises CSV cells that a spreadsheet would read as formulas.
- `autograde`: nbgrader's autograde over the staged hand-ins, N workers at a time, in the sandbox.
- `grading`: stages, autogrades and reports every student's score, or why there is none.
- `checks`: reads the check lines (✓/✗ and reasons) that test cells print, from an autograded notebook.
- `catalogue`: grades the catalogue of known right and wrong answers (tests/catalogue.py) and tabulates it.
- `benchmark`: times the autograding of one submission.
- `cli`: the `python -m coursekit` commands behind the Makefile.
"""
